"""Finding, reading and writing image files: the only place that decodes images.

Colour policy: 8-bit RGB is used as is. Other 8-bit modes (grayscale ``L``/``LA``, palette ``P``/``PA``,
``RGBA``, ``CMYK``, ``YCbCr``, bilevel ``1``) are converted with Pillow's ``convert("RGB")`` (grey is
replicated, alpha is dropped, not composited), and the dataset logs one warning per colour mode (per
loader worker process), naming the first such file. Images with more than 8 bits per channel are
refused: the modes ``I;16``, ``I``, ``F``, and 16-bit RGB(A) PNGs, which Pillow would silently cut to
their high byte; there is no single right way to bring them to 0..255 (convert them first, with the
rounding you want).

Orientation: an EXIF orientation tag (phone photos) is applied as image viewers apply it
(``ImageOps.exif_transpose``), so the pixels are the picture a person sees; the reader logs it once,
naming the first such file. :func:`image_size` gives the size after that turn.

Bounded decoding (photo collections of any size, ``RGBImageReader.read(path, longest_side, max_pixels)``):
a JPEG is decoded at the smallest of its built-in reductions (1/2, 1/4, 1/8) that keeps
``longest_side``, any image is then shrunk (Lanczos) to that longer side, and a file that would still
decode to more than ``max_pixels`` pixels is refused before its pixels are read.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

from PIL import ExifTags, Image, ImageOps

from ttsr_lightning.data.errors import DatasetLayoutError, ImageError
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.files import atomic_write

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CONVERTED_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
# EXIF orientations that swap width and height (a turn by 90 degrees, possibly mirrored)
_TURNED = frozenset({5, 6, 7, 8})


def is_image_file(path: Path) -> bool:
    """A visible file whose suffix is one of IMAGE_SUFFIXES (case-insensitive)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path, pattern: str = "*") -> list[Path]:
    """Image files directly inside ``folder`` whose name matches ``pattern``, sorted by name.

    Hidden files and files with other suffixes (``Thumbs.db``, ``README``) are not images and are not
    listed; every listed image is used by the datasets.
    """
    return sorted(path for path in folder.glob(pattern) if is_image_file(path))


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as a viewer shows the image (EXIF orientation applied), from the file's header
    (nothing decoded); ImageError naming the file."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            return (height, width) if _orientation(image) in _TURNED else (width, height)
    except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise ImageError(f"{path}: cannot read image ({exc}); expected a readable PNG/JPEG/BMP") from exc


def _orientation(image: Image.Image) -> int:
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return orientation if isinstance(orientation, int) else 1


def _sixteen_bits(image: Image.Image) -> bool:
    """A 16-bit-per-channel file that Pillow decodes to 8-bit RGB(A) by dropping the low byte."""
    return any(";16" in str(tile.args) for tile in getattr(image, "tile", None) or [])


def require_unique_stems(images: Sequence[Path], key: str) -> None:
    """Raise ConfigError (naming ``key``) when images of one folder share a stem (``a.png``, ``a.jpg``):
    pairing files by stem would be ambiguous."""
    stems = [path.stem for path in images]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise ConfigError(
            f"{key}: several images share the stem(s) {repeated} in {images[0].parent}; rename them"
        )


def require_folder(folder: Path, dataset: str, expected: str) -> None:
    """Raise DatasetLayoutError when ``folder`` is not an existing directory."""
    if not folder.is_dir():
        raise DatasetLayoutError(dataset, [f"{folder}: folder not found; expected {expected}"])


class RGBImageReader:
    """Decodes image files to 8-bit RGB PIL images, with the colour policy of this module.

    Args:
        dataset: dataset name used in log messages.
    """

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self._converted_modes: set[str] = set()
        self._turned = False

    def read(self, path: Path, longest_side: int | None = None, max_pixels: int | None = None) -> Image.Image:
        """The fully decoded image at ``path`` in mode RGB, turned as its EXIF orientation says;
        ImageError naming the file otherwise. ``longest_side``: shrunk (never enlarged) to at most that
        many pixels on its longer side; ``max_pixels``: refused when its decoding would hold more pixels
        (see the module docstring)."""
        try:
            with Image.open(path) as opened:
                if _sixteen_bits(opened):
                    raise ImageError(
                        f"{path}: 16 bits per channel ({opened.mode}); expected 8 bits per channel "
                        "(convert it first, with the rounding you want: Pillow would drop the low byte)"
                    )
                if longest_side is not None and max(opened.size) > longest_side:
                    ratio = longest_side / max(opened.size)
                    opened.draft("RGB", (math.ceil(opened.width * ratio), math.ceil(opened.height * ratio)))
                if max_pixels is not None and opened.width * opened.height > max_pixels:
                    raise ImageError(
                        f"{path}: {opened.width}x{opened.height} pixels to decode, more than max_pixels="
                        f"{max_pixels}; expected a smaller image (or raise the limit)"
                    )
                opened.load()  # decode now: a truncated file fails here, not later inside a resize
                orientation = _orientation(opened)
                image = ImageOps.exif_transpose(opened) if orientation != 1 else opened
        except FileNotFoundError as exc:
            raise ImageError(f"{path}: file not found; expected an image file") from exc
        except (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError) as exc:
            raise ImageError(
                f"{path}: cannot decode image ({exc}); expected a readable PNG/JPEG/BMP"
            ) from exc
        if orientation != 1 and not self._turned:
            self._turned = True
            log.warning(
                "%s: turning images as their EXIF orientation says, as image viewers do (first one: %s, "
                "orientation %d); logged once",
                self.dataset,
                path,
                orientation,
            )
        if image.mode != "RGB":
            image = self._converted(image, path)
        if longest_side is not None and max(image.size) > longest_side:
            ratio = longest_side / max(image.size)
            size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        return image

    def _converted(self, image: Image.Image, path: Path) -> Image.Image:
        if image.mode not in CONVERTED_MODES:
            raise ImageError(
                f"{path}: colour mode {image.mode!r} is not supported; expected 8-bit RGB "
                f"(8-bit {', '.join(sorted(CONVERTED_MODES))} are converted to RGB)"
            )
        if image.mode not in self._converted_modes:
            self._converted_modes.add(image.mode)
            log.warning(
                "%s: converting %s images to RGB (first one: %s); logged once per colour mode",
                self.dataset,
                image.mode,
                path,
            )
        return image.convert("RGB")


def save_image(image: Image.Image, path: Path) -> None:
    """Writes ``image`` to ``path`` in the format its suffix names, atomically (never half a file)."""
    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    atomic_write(path, lambda file: image.save(file, format=image_format))


def find_images(folder: Path, pattern: str, dataset: str, expected: str) -> list[Path]:
    """``list_images(folder, pattern)``; DatasetLayoutError when the folder is missing or has none."""
    require_folder(folder, dataset, expected)
    images = list_images(folder, pattern)
    if not images:
        raise DatasetLayoutError(dataset, [f"{folder}: no images match {pattern!r}; expected {expected}"])
    return images
