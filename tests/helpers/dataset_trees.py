"""Small dataset trees with the real folder layouts, cut from scikit-image's bundled photographs: each
released dataset's layout (CUFED, CUFED5, Sun80, Urban100 / Manga109), and the whole tree the paper's
recipes read (:func:`make_paper_tree`)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image


@cache
def _photograph(name: str) -> np.ndarray:
    return np.asarray(getattr(skimage.data, name)())


def photo_crop(name: str, top: int, left: int, height: int, width: int) -> Image.Image:
    """An RGB crop of a scikit-image photograph (``astronaut``, ``coffee``, ``chelsea``, ``rocket``)."""
    pixels = _photograph(name)[top : top + height, left : left + width]
    assert pixels.shape == (height, width, 3), f"crop outside {name}"
    return Image.fromarray(pixels)


def save(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def make_cufed_train(root: Path, count: int = 4) -> Path:
    """``root/input`` and ``root/ref``: 160x160 HR crops; ref 2 is 140x150 (smaller, zero-padded)."""
    photos = ("astronaut", "coffee", "chelsea", "rocket")
    for index in range(count):
        photo, shift = photos[index % len(photos)], index % 8  # every crop inside the smallest photo
        save(photo_crop(photo, 10 * shift, 20 * shift, 160, 160), root / "input" / f"{index:06d}.png")
        ref_size = (140, 150) if index == 2 else (160, 160)
        save(photo_crop(photo, 40 + 10 * shift, 60, *ref_size), root / "ref" / f"{index:06d}.png")
    return root


def make_cufed5(root: Path, groups: int = 2) -> Path:
    """``root/NNN_0.png`` (HR, 90x130: not multiples of 4) and ``NNN_1..5.png`` of assorted sizes."""
    photos = ("astronaut", "coffee", "chelsea", "rocket")
    for group in range(groups):
        photo = photos[group % len(photos)]
        save(photo_crop(photo, 100, 100, 90, 130), root / f"{group:03d}_0.png")
        for level in range(1, 6):
            other = photos[(group + level) % len(photos)] if level == 5 else photo
            ref = photo_crop(other, 20 * level, 15 * level, 70 + 6 * level, 110 - 5 * level)
            save(ref, root / f"{group:03d}_{level}.png")
    return root


def make_sun80(root: Path) -> Path:
    """Three JPEG HR images with 3, 4 and 2 scene matches; the third one's folder is named by its stem."""
    hr_dir, matches = root / "Sun_Hays_SR_groundtruth", root / "Sun_Hays_SR_scenematches"
    for index, (photo, refs) in enumerate((("astronaut", 3), ("coffee", 4), ("chelsea", 2))):
        name = f"Image_{index + 1:02d}.jpg"
        save(photo_crop(photo, 60, 80, 96, 120), hr_dir / name)
        folder = matches / (name if index < 2 else Path(name).stem)
        for ref in range(refs):
            save(photo_crop("rocket", 30 * ref, 40 * ref, 80, 100), folder / f"match_{ref:02d}.jpg")
    return root


def make_image_folder(root: Path, count: int = 3) -> Path:
    """``root/img_NNN.png``: HR images of 64x88 (Urban100 / Manga109 layout)."""
    photos = ("astronaut", "coffee", "chelsea", "rocket")
    for index in range(count):
        save(
            photo_crop(photos[index % len(photos)], 50 + 7 * index, 60, 64, 88),
            root / f"img_{index + 1:03d}.png",
        )
    return root


def make_paper_tree(data_dir: Path, pairs: int = 18, skip: tuple[str, ...] = ()) -> Path:
    """``data_dir`` as ``data=paper`` reads it: CUFED training pairs (160x160), CUFED5 (3 groups), Sun80,
    Urban100 and Manga109 (3 images each); the datasets named in ``skip`` (``Urban100``, ...) left out."""
    builders = {
        "CUFED": lambda: make_cufed_train(data_dir / "CUFED" / "train", pairs),
        "CUFED5": lambda: make_cufed5(data_dir / "CUFED" / "test" / "CUFED5", groups=3),
        "Sun80": lambda: make_sun80(data_dir / "Sun80"),
        "Urban100": lambda: make_image_folder(data_dir / "Urban100"),
        "Manga109": lambda: make_image_folder(data_dir / "Manga109"),
    }
    for name, build in builders.items():
        if name not in skip:
            build()
    return data_dir


def astronaut_batch() -> dict[str, torch.Tensor]:
    """An evaluation batch cut from the astronaut photograph in [-1, 1]: LR 36x128 (its LR-up 144x512)
    and a 40x60 reference, for the memory-budgeted forward's tests."""
    astronaut = torch.tensor(skimage.data.astronaut()).permute(2, 0, 1).float().div(127.5).sub(1)
    lr_up = astronaut[:, 100:244, :512].unsqueeze(0)
    return {
        "lr": torch.nn.functional.interpolate(lr_up, scale_factor=0.25, mode="area"),
        "lr_up": lr_up,
        "ref": astronaut[:, 300:340, 100:160].unsqueeze(0),
        "ref_down_up": astronaut[:, 300:340, 160:220].unsqueeze(0),
    }
