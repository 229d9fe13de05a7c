"""The official TTSR preprocessing (researchmm/TTSR ``dataset/cufed.py``), image by image.

All resizing is PIL bicubic on 8-bit images, exactly as the official loader: the network's own
``F.interpolate`` bicubic is a different kernel, and the numbers move when they are mixed up.
Arrays are float32 ``(H, W, 3)`` in [-1, 1] (``uint8 / 127.5 - 1``), tensors ``(3, H, W)``. Per-sample
work stays in numpy (single-threaded): small torch ops in a busy main process (``num_workers=0``)
can be 40x slower, waiting on torch's intra-op thread pool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ttsr_lightning.data.errors import ImageError

SCALE = 4


def to_array(image: Image.Image) -> np.ndarray:
    """8-bit RGB image -> (H, W, 3) float32 in [-1, 1], as the official code computes it."""
    return np.asarray(image, dtype=np.uint8).astype(np.float32) / 127.5 - 1.0


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) array -> contiguous (3, H, W) tensor of the same values (the official ``ToTensor``)."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB image -> (3, H, W) float32 in [-1, 1]."""
    return array_to_tensor(to_array(image))


def bicubic_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """PIL bicubic resize to ``width`` x ``height`` (antialiased when shrinking, as PIL always is)."""
    return image.resize((width, height), Image.Resampling.BICUBIC)


def require_size(image: Image.Image, min_width: int, min_height: int, path: Path, role: str) -> None:
    """Raise ImageError naming ``path`` when ``image`` is smaller than ``min_width`` x ``min_height``."""
    width, height = image.size
    if width < min_width or height < min_height:
        raise ImageError(
            f"{path}: {role} is {width}x{height} px (width x height); "
            f"expected at least {min_width}x{min_height}"
        )


def crop_to_multiple_of_scale(image: Image.Image, path: Path, role: str) -> Image.Image:
    """Crop top-left to width and height multiples of 4 (the official test loader's ``//4*4`` crop)."""
    require_size(image, SCALE, SCALE, path, role)
    width, height = image.size
    return image.crop((0, 0, width // SCALE * SCALE, height // SCALE * SCALE))


def degrade(hr: Image.Image) -> tuple[Image.Image, Image.Image]:
    """``(lr, lr_up)``: HR bicubic /4 (sizes floored), then that LR bicubic x4 back to the HR size."""
    width, height = hr.size
    lr = bicubic_resize(hr, width // SCALE, height // SCALE)
    return lr, bicubic_resize(lr, width, height)


def down_up(ref: Image.Image) -> Image.Image:
    """``ref_down_up``: the reference bicubic /4 (sizes floored), then x4 back to its own size."""
    width, height = ref.size
    return bicubic_resize(bicubic_resize(ref, width // SCALE, height // SCALE), width, height)


def pad_top_left(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Paste ``array`` (h, w, 3) at the top-left of a black (-1) (height, width, 3) canvas.

    The official training loader does this for references smaller than 160x160 so that they batch;
    the black area is not masked (its features are ordinary search keys, as in the official code).
    """
    canvas = np.full((height, width, array.shape[2]), -1.0, dtype=array.dtype)
    canvas[: array.shape[0], : array.shape[1]] = array
    return canvas
