"""CUFED training set (SRNTT / TTSR): pairs of 160x160 images and their references.

Layout (``root`` is the folder holding ``input/`` and ``ref/``, e.g. ``<data_dir>/CUFED/train``)::

    root/input/*.png   HR images (11,871 in the real set, all 160x160)
    root/ref/*.png     one reference per input, with the same file name (extension aside)

The official loader pairs the two folders by sorted order; so does this one, but it refuses (at
construction) folders whose sorted file names differ or whose counts differ, naming the first
mismatch, because a single stray file would silently shift every later pair.

A training sample (official ``TrainSet``): ``hr`` 160x160 as read; ``lr`` = PIL bicubic /4 (40x40);
``lr_up`` = ``lr`` bicubic x4; ``ref_down_up`` = ref bicubic /4 then x4 at the reference's own size;
``ref`` and ``ref_down_up`` pasted at the top-left of a 160x160 black (-1) canvas when smaller; all in
[-1, 1]; then the official flips and rotations (``augmentation.py``). Beyond the official code (which
only sees 160x160 CUFED images, where none of this applies): an HR larger than ``patch_size`` is
cropped to it and a reference larger than the canvas is cropped to it, each at a seeded random
position drawn before the flips; an HR smaller than ``patch_size`` is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ttsr_lightning.data.augmentation import apply_augmentation, draw_augmentation
from ttsr_lightning.data.errors import DatasetLayoutError
from ttsr_lightning.data.image_io import RGBImageReader, list_images, require_folder
from ttsr_lightning.data.preprocessing import (
    SCALE,
    array_to_tensor,
    degrade,
    down_up,
    pad_top_left,
    require_size,
    to_array,
)
from ttsr_lightning.data.seeding import augmentation_generator

DATASET_NAME = "CUFED"


class ImagePair(NamedTuple):
    """An HR training image and its reference."""

    input: Path
    ref: Path


def find_cufed_pairs(root: str | Path) -> list[ImagePair]:
    """The (input, ref) pairs under ``root``, in sorted order; DatasetLayoutError if they do not pair up."""
    root = Path(root)
    input_dir, ref_dir = root / "input", root / "ref"
    require_folder(root, DATASET_NAME, "the CUFED training folder holding input/ and ref/")
    missing = [
        f"{folder}: folder not found; expected the {what}"
        for folder, what in ((input_dir, "HR training images"), (ref_dir, "reference images"))
        if not folder.is_dir()
    ]
    if missing:
        if (root / "train" / "input").is_dir():
            missing.append(f"hint: {root / 'train'} holds input/; point the root there")
        raise DatasetLayoutError(DATASET_NAME, missing)
    inputs, refs = list_images(input_dir), list_images(ref_dir)
    problems = []
    if not inputs:
        problems.append(f"{input_dir}: no images found; expected the HR training images")
    if len(inputs) != len(refs):
        problems.append(
            f"{input_dir} has {len(inputs)} images but {ref_dir} has {len(refs)}; expected one ref per input"
        )
    mismatch = next(((a, b) for a, b in zip(inputs, refs, strict=False) if a.stem != b.stem), None)
    if mismatch is not None:
        problems.append(
            f"sorted file names differ first at {mismatch[0]} vs {mismatch[1]}; expected input/ and ref/ "
            "to hold the same file names, extension aside (pairs are made by sorted order)"
        )
    elif len(inputs) != len(refs):
        longer = inputs if len(inputs) > len(refs) else refs
        problems.append(f"first unpaired file: {longer[min(len(inputs), len(refs))]}")
    if problems:
        raise DatasetLayoutError(DATASET_NAME, problems)
    return [ImagePair(a, b) for a, b in zip(inputs, refs, strict=True)]


class CUFEDTrainDataset(Dataset[dict[str, torch.Tensor]]):
    """CUFED-shaped training pairs, preprocessed and augmented as the official loader.

    Items are keyed by ``(epoch, index)`` (what ``EpochSampler`` yields) or by a plain ``index``
    (epoch 0). Each item: ``lr`` (3, P/4, P/4), ``lr_up``, ``hr``, ``ref``, ``ref_down_up``
    (3, P, P), float32 in [-1, 1], with P = ``patch_size``.

    Args:
        root: folder holding ``input/`` and ``ref/``.
        patch_size: HR and reference canvas size in pixels (160 in the official code; multiple of 4).
        augment: apply the official random flips and rotations.
        seed: seed of the per-sample generators (non-negative).
    """

    def __init__(self, root: str | Path, patch_size: int = 160, augment: bool = True, seed: int = 0) -> None:
        if patch_size <= 0 or patch_size % SCALE:
            raise ValueError(f"patch_size must be a positive multiple of {SCALE}, got {patch_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.root = Path(root)
        self.pairs = find_cufed_pairs(self.root)
        self.patch_size = patch_size
        self.augment = augment
        self.seed = seed
        self._reader = RGBImageReader(DATASET_NAME)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        pair = self.pairs[index]
        rng = augmentation_generator(self.seed, epoch, index)
        size = self.patch_size

        hr = self._reader.read(pair.input)
        require_size(hr, size, size, pair.input, f"HR (the training patch size is {size})")
        hr = _random_crop(hr, size, size, rng)
        lr, lr_up = degrade(hr)

        ref = self._reader.read(pair.ref)
        require_size(ref, SCALE, SCALE, pair.ref, "reference")
        ref = _random_crop(ref, min(ref.width, size), min(ref.height, size), rng)
        sample = {
            "lr": to_array(lr),
            "lr_up": to_array(lr_up),
            "hr": to_array(hr),
            "ref": pad_top_left(to_array(ref), size, size),
            "ref_down_up": pad_top_left(to_array(down_up(ref)), size, size),
        }
        if self.augment:
            sample = apply_augmentation(sample, draw_augmentation(rng))
        return {name: array_to_tensor(array) for name, array in sample.items()}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, pairs={len(self)}, patch_size={self.patch_size})"
        )


def _random_crop(image: Image.Image, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """``image`` cropped to ``width`` x ``height`` at a position drawn from ``rng`` (no draw when it fits)."""
    if image.size == (width, height):
        return image
    left = int(rng.integers(0, image.width - width + 1))
    top = int(rng.integers(0, image.height - height + 1))
    return image.crop((left, top, left + width, top + height))
