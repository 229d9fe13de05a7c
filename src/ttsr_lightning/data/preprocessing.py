"""The official TTSR preprocessing (researchmm/TTSR ``dataset/cufed.py``), image by image.

All resizing is PIL bicubic on 8-bit images, exactly as the official loader: the network's own
``F.interpolate`` bicubic is a different kernel, and the numbers move when they are mixed up.
Tensors are float32 ``(3, H, W)`` in [-1, 1] (``uint8 / 127.5 - 1``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ttsr_lightning.data.errors import ImageError

SCALE = 4


def to_tensor(image: Image.Image) -> torch.Tensor:
    """8-bit RGB image -> (3, H, W) float32 in [-1, 1], computed as the official code does."""
    array = np.array(image, dtype=np.uint8)  # (H, W, 3), a writable copy
    return torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1.0


def bicubic_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """PIL bicubic resize to ``width`` x ``height`` (antialiased when shrinking, as PIL always is)."""
    return image.resize((width, height), Image.Resampling.BICUBIC)


def require_size(image: Image.Image, min_width: int, min_height: int, path: Path, role: str) -> None:
    """Raise ImageError naming ``path`` when ``image`` is smaller than ``min_width`` x ``min_height``."""
    width, height = image.size
    if width < min_width or height < min_height:
        raise ImageError(
            f"{path}: {role} is {width}x{height} px (width x height); expected at least {min_width}x{min_height}"
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


def pad_top_left(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Paste ``image`` (3, h, w) at the top-left of a black (-1) (3, height, width) canvas.

    The official training loader does this for references smaller than 160x160 so that they batch;
    the black area is not masked (its features are ordinary search keys, as in the official code).
    """
    canvas = torch.full((image.shape[0], height, width), -1.0, dtype=image.dtype)
    canvas[:, : image.shape[1], : image.shape[2]] = image
    return canvas
