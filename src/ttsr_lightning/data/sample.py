"""The embedded sample dataset: a tiny CUFED-shaped set cut from scikit-image's bundled photographs.

It lets a fresh install train and test with no download, and shows reference-based SR at work: every
training reference shares texture with its HR crop, as CUFED's references do. ``build_sample_dataset(root)``
writes::

    root/CUFED/train/input/<photo>_NN.png   80 HR crops of 64x64 (CUFED's are 160x160; 64 keeps a CPU
                                            run to minutes), 8 from each of 10 photographs
    root/CUFED/train/ref/<photo>_NN.png     their references: a crop of the same photo shifted by 8-24 px
                                            (the other view of a stereo pair for the motorcycle), so
                                            most of the HR crop's content lies in it at another place;
                                            every fourth one 56x60, to exercise the zero padding
    root/CUFED/test/CUFED5/NNN_0.png        6 HR images of about 160x240 (two not multiples of 4, one
                                            portrait), from regions no training crop touches
    root/CUFED/test/CUFED5/NNN_1..5.png     references, most to least similar: _1 overlaps the HR
                                            crop (for the motorcycle: the same crop of the other
                                            stereo view), _2 overlaps it less, _3 is another part of
                                            the same photo, _4 the whole photo at half size, _5 a
                                            crop of a different photo
    root/CUFED/PROVENANCE.md                sources, licences and the crop of every file

The training images are the training patches (``patch_size: 64`` in ``conf/data/sample.yaml``): the
loader then crops nothing, and each pair keeps the overlap it was cut with. (Random 64 px crops of
larger images and of their references, drawn independently, would mostly miss each other.)

The content is fixed arithmetic on fixed photographs (no random numbers), so every build is the same.
Building is idempotent (an existing sample set is reused) and safe when several processes (DDP
ranks) build at once: each writes a private temporary folder and renames it into place atomically.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ttsr_lightning.data.errors import DatasetLayoutError
from ttsr_lightning.markdown import markdown_table

log = logging.getLogger(__name__)

SAMPLE_VERSION = 2
PROVENANCE_FILE = "PROVENANCE.md"
PATCH = 64
SMALL_REF = (56, 60)  # (height, width) of every fourth training reference
PAIRS_PER_PHOTO = 8
GRID_STEP = 32
# (rows, columns) from a training HR crop to its reference, in turn: 8-24 px, every direction
REF_SHIFTS = ((12, 20), (-16, 8), (20, -12), (-8, -24), (24, 16), (-20, -8), (8, -16), (-12, 24))


class Photo(NamedTuple):
    """A scikit-image photograph: its ``skimage.data`` function, source and licence, how to prepare it."""

    loader: str
    source: str
    shrink: int = 1  # integer downscale, so that a crop holds more than a few stars
    view: int | None = None  # which image of a function returning several (a stereo pair)


PHOTOS: dict[str, Photo] = {
    "astronaut": Photo("astronaut", "Eileen Collins, NASA Great Images database; public domain"),
    "coffee": Photo("coffee", "Pikolo Espresso Bar, photograph by Rachel Michetti; CC0"),
    "chelsea": Photo("chelsea", "Chelsea the cat, photograph by Stefan van der Walt; CC0"),
    "rocket": Photo("rocket", "DSCOVR launch on Falcon 9, SpaceX; released into the public domain"),
    "hubble": Photo(
        "hubble_deep_field", "Hubble eXtreme Deep Field, NASA (HubbleSite); public domain", shrink=2
    ),
    "ihc": Photo(
        "immunohistochemistry",
        "IHC staining, Center for Microscopy and Molecular Imaging; no known copyright",
    ),
    "motorcycle_left": Photo(
        "stereo_motorcycle",
        "Middlebury 2014 stereo benchmark, left view (Scharstein et al., GCPR 2014), as redistributed by "
        "scikit-image; cite the benchmark when publishing results",
        view=0,
    ),
    "motorcycle_right": Photo("stereo_motorcycle", "the same stereo pair, right view", view=1),
    # greyscale texture photographs (stored as RGB): brick, gravel and grass are textures to transfer
    "brick": Photo("brick", "brick wall (CC0Textures Bricks25, perspective-corrected); CC0"),
    "gravel": Photo("gravel", "gravel (CC0Textures Gravel04); CC0"),
    "grass": Photo("grass", "grass (DeviantArt, linolafett, Grass 01); CC0"),
}


class Crop(NamedTuple):
    """Rows ``top:top+height`` and columns ``left:left+width`` of ``photo`` resized by ``scale``."""

    photo: str
    top: int
    left: int
    height: int
    width: int
    scale: float = 1.0


class CUFED5Group(NamedTuple):
    """A CUFED5-style group: the HR crop and references _1 (most similar) to _5 (least)."""

    hr: Crop
    refs: tuple[Crop, Crop, Crop, Crop, Crop]


CUFED5_GROUPS = (
    CUFED5Group(
        Crop("astronaut", 300, 256, 160, 240),
        (
            Crop("astronaut", 260, 220, 180, 240),
            Crop("astronaut", 220, 150, 160, 240),
            Crop("astronaut", 40, 250, 160, 240),
            Crop("astronaut", 0, 0, 256, 256, 0.5),
            Crop("coffee", 0, 0, 160, 240),
        ),
    ),
    CUFED5Group(
        Crop("coffee", 230, 350, 162, 243),
        (
            Crop("coffee", 200, 300, 170, 250),
            Crop("coffee", 150, 250, 160, 240),
            Crop("coffee", 0, 0, 160, 240),
            Crop("coffee", 0, 0, 200, 300, 0.5),
            Crop("chelsea", 0, 0, 160, 240),
        ),
    ),
    CUFED5Group(
        Crop("chelsea", 44, 275, 240, 160),
        (
            Crop("chelsea", 20, 240, 250, 170),
            Crop("chelsea", 0, 180, 240, 160),
            Crop("chelsea", 40, 0, 240, 160),
            Crop("chelsea", 0, 0, 150, 225, 0.5),
            Crop("rocket", 100, 200, 240, 160),
        ),
    ),
    CUFED5Group(
        Crop("rocket", 250, 380, 164, 236),
        (
            Crop("rocket", 230, 340, 180, 250),
            Crop("rocket", 200, 260, 164, 236),
            Crop("rocket", 0, 0, 164, 236),
            Crop("rocket", 0, 0, 213, 320, 0.5),
            Crop("hubble", 0, 0, 164, 236),
        ),
    ),
    CUFED5Group(
        Crop("motorcycle_left", 320, 480, 160, 240),
        (
            Crop("motorcycle_right", 320, 480, 160, 240),
            Crop("motorcycle_left", 280, 380, 160, 240),
            Crop("motorcycle_left", 0, 0, 160, 240),
            Crop("motorcycle_left", 0, 0, 250, 370, 0.5),
            Crop("ihc", 0, 0, 160, 240),
        ),
    ),
    CUFED5Group(
        Crop("ihc", 340, 260, 157, 245),
        (
            Crop("ihc", 300, 220, 176, 248),
            Crop("ihc", 250, 150, 156, 244),
            Crop("ihc", 0, 0, 156, 244),
            Crop("ihc", 0, 0, 256, 256, 0.5),
            Crop("astronaut", 0, 0, 156, 244),
        ),
    ),
)

# Training HR photo -> the photo its references are cut from (the motorcycle's other stereo view).
TRAIN_PHOTOS = {
    "astronaut": "astronaut",
    "coffee": "coffee",
    "chelsea": "chelsea",
    "rocket": "rocket",
    "hubble": "hubble",
    "ihc": "ihc",
    "motorcycle_left": "motorcycle_right",
    "brick": "brick",
    "gravel": "gravel",
    "grass": "grass",
}


def build_sample_dataset(root: str | Path) -> Path:
    """Make sure ``root/CUFED`` holds the sample dataset (build it if absent) and return that path.

    Raises DatasetLayoutError when ``root/CUFED`` exists but is not the sample set, or is an older one.
    """
    root = Path(root)
    target = root / "CUFED"
    if target.exists():
        return _existing(target)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".CUFED-sample-", dir=root))
    try:
        train_pairs = _write_sample(staging)
        try:
            staging.rename(target)  # atomic: readers see all of it or nothing
        except OSError:
            if not target.exists():
                raise
            return _existing(target)  # another process (a DDP rank) finished first
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log.info(
        "built the embedded sample dataset in %s: %d training pairs (train/), "
        "%d CUFED5 groups (test/CUFED5/); sources and licences in %s",
        target,
        train_pairs,
        len(CUFED5_GROUPS),
        target / PROVENANCE_FILE,
    )
    return target


def _existing(target: Path) -> Path:
    """``target`` if it is the current sample set; DatasetLayoutError saying what to do otherwise."""
    note = target / PROVENANCE_FILE
    if not note.is_file():
        raise DatasetLayoutError(
            "sample",
            [
                f"{target}: exists but is not the embedded sample set (no {PROVENANCE_FILE}); expected "
                "the sample's own folder (sample_root must not be where the real CUFED lives)"
            ],
        )
    first_line = note.read_text().splitlines()[0] if note.stat().st_size else ""
    if first_line != _title():
        raise DatasetLayoutError(
            "sample", [f"{note}: from another sample version ({first_line!r}); delete {target} to rebuild it"]
        )
    log.info("using the embedded sample dataset in %s", target)
    return target


def _title() -> str:
    return f"# ttsr-lightning embedded sample dataset, version {SAMPLE_VERSION}"


def load_photos() -> dict[str, Image.Image]:
    """The photographs as RGB PIL images (scikit-image ships them; nothing is downloaded)."""
    import skimage.data  # a runtime dependency of the sample set only

    photos = {}
    for key, photo in PHOTOS.items():
        pixels = getattr(skimage.data, photo.loader)()
        if photo.view is not None:
            pixels = pixels[photo.view]
        image = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).convert("RGB")
        if photo.shrink > 1:
            size = (image.width // photo.shrink, image.height // photo.shrink)
            image = image.resize(size, Image.Resampling.LANCZOS)
        photos[key] = image
    return photos


def _cut(photos: dict[str, Image.Image], crop: Crop) -> Image.Image:
    image = photos[crop.photo]
    if crop.scale != 1.0:
        size = (round(image.width * crop.scale), round(image.height * crop.scale))
        image = image.resize(size, Image.Resampling.BICUBIC)
    box = (crop.left, crop.top, crop.left + crop.width, crop.top + crop.height)
    if box[2] > image.width or box[3] > image.height:
        raise ValueError(f"sample recipe: {crop} lies outside {crop.photo} ({image.width}x{image.height})")
    return image.crop(box)


def _overlaps(a: Crop, b: Crop) -> bool:
    return (
        a.top < b.top + b.height
        and b.top < a.top + a.height
        and a.left < b.left + b.width
        and b.left < a.left + a.width
    )


def _train_crops(photos: dict[str, Image.Image]) -> list[tuple[Crop, Crop]]:
    """(HR crop, reference crop) pairs on a grid, evenly chosen among those that touch no test HR crop.

    The reference of the n-th pair is the HR crop moved by ``REF_SHIFTS[n]`` (kept inside the photo), or
    the same place in the other stereo view; every fourth is cut smaller, inside that crop."""
    test_regions = [group.hr for group in CUFED5_GROUPS]
    pairs = []
    for photo, ref_photo in TRAIN_PHOTOS.items():
        width, height = photos[photo].size
        scene = {photo, ref_photo}  # the stereo views share a scene and its test crop
        candidates = []
        for top in range(0, height - PATCH + 1, GRID_STEP):
            for left in range(0, width - PATCH + 1, GRID_STEP):
                hr = Crop(photo, top, left, PATCH, PATCH)
                if not any(r.photo in scene and _overlaps(hr, r) for r in test_regions):
                    candidates.append(hr)
        step = (len(candidates) - 1) / (PAIRS_PER_PHOTO - 1)
        for number in range(PAIRS_PER_PHOTO):
            hr = candidates[round(number * step)]
            shift = REF_SHIFTS[number] if ref_photo == photo else (0, 0)
            ref_top = min(max(hr.top + shift[0], 0), height - PATCH)
            ref_left = min(max(hr.left + shift[1], 0), width - PATCH)
            ref = Crop(ref_photo, ref_top, ref_left, PATCH, PATCH)
            if any(ref.photo in scene and _overlaps(ref, r) for r in test_regions):
                ref = Crop(ref_photo, hr.top, hr.left, PATCH, PATCH)  # never a test region's pixels
            if number % 4 == 3:  # a smaller reference (inside the full one), zero-padded by the loader
                ref = ref._replace(height=SMALL_REF[0], width=SMALL_REF[1])
            pairs.append((hr, ref))
    return pairs


def _write_sample(folder: Path) -> int:
    """Write the sample dataset's CUFED folder contents into ``folder``; returns the training pair count."""
    photos = load_photos()
    input_dir, ref_dir, test_dir = (
        folder / "train" / "input",
        folder / "train" / "ref",
        folder / "test" / "CUFED5",
    )
    for directory in (input_dir, ref_dir, test_dir):
        directory.mkdir(parents=True)
    rows: list[tuple[str, str]] = []
    pairs = _train_crops(photos)
    numbers: dict[str, int] = {}
    for hr, ref in pairs:
        number = numbers[hr.photo] = numbers.get(hr.photo, -1) + 1
        name = f"{hr.photo}_{number:02d}.png"
        _cut(photos, hr).save(input_dir / name)
        _cut(photos, ref).save(ref_dir / name)
        rows += [(f"train/input/{name}", _describe(hr)), (f"train/ref/{name}", _describe(ref))]
    for index, group in enumerate(CUFED5_GROUPS):
        for member, crop in enumerate((group.hr, *group.refs)):
            name = f"{index:03d}_{member}.png"
            _cut(photos, crop).save(test_dir / name)
            rows.append((f"test/CUFED5/{name}", _describe(crop)))
    (folder / PROVENANCE_FILE).write_text(_provenance(rows))
    return len(pairs)


def _describe(crop: Crop) -> str:
    rows, columns = f"{crop.top}-{crop.top + crop.height}", f"{crop.left}-{crop.left + crop.width}"
    scale = "" if crop.scale == 1.0 else f" of the photo resized by {crop.scale}"
    return f"{crop.photo}: rows {rows}, columns {columns}{scale}"


def _provenance(rows: list[tuple[str, str]]) -> str:
    """The sample set's README: where each photograph comes from, and ``rows`` (file, crop) as a table."""
    sources = [f"- `{key}`: `skimage.data.{photo.loader}()`: {photo.source}" for key, photo in PHOTOS.items()]
    return "\n".join(
        [
            _title(),
            "",
            f"Built by `ttsr_lightning.data.sample` from the photographs bundled with scikit-image "
            f"{version('scikit-image')} (nothing downloaded): crops (and the resizes noted) saved as PNG.",
            "A toy set for smoke tests and tutorials: numbers measured on it say nothing about CUFED.",
            "",
            "## Photographs, sources and licences (as documented by scikit-image)",
            *sources,
            "",
            "## Files",
            markdown_table(("file", "crop"), rows),
            "",
        ]
    )
