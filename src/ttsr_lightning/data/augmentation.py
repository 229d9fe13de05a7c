"""The official training augmentation (``RandomFlip`` then ``RandomRotate`` in ``dataset/cufed.py``).

Two groups are transformed independently: the LR group (``lr``, ``lr_up``, ``hr``) and the Ref group
(``ref``, ``ref_down_up``). Draw order, as the official code: four fair coins (LR-group horizontal flip,
Ref-group horizontal flip, LR-group vertical flip, Ref-group vertical flip), then a quarter-turn count
k1 in {0..3} for the LR group and an independent k2 for the Ref group. Each array is flipped
horizontally, then vertically, then rotated by ``np.rot90(k)`` (counter-clockwise), as the official
code does on (H, W, C) arrays; here on (C, H, W) tensors.

The caller passes the per-sample generator (``seeding.augmentation_generator(seed, epoch, index)``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

LR_GROUP = ("lr", "lr_up", "hr")
REF_GROUP = ("ref", "ref_down_up")


class Augmentation(NamedTuple):
    """One draw of the official flips and rotations."""

    lr_hflip: bool
    ref_hflip: bool
    lr_vflip: bool
    ref_vflip: bool
    lr_quarter_turns: int
    ref_quarter_turns: int


def draw_augmentation(rng: np.random.Generator) -> Augmentation:
    """Four coins then two quarter-turn counts, in the official order."""
    lr_hflip, ref_hflip, lr_vflip, ref_vflip = (bool(rng.integers(0, 2)) for _ in range(4))
    return Augmentation(
        lr_hflip, ref_hflip, lr_vflip, ref_vflip, int(rng.integers(0, 4)), int(rng.integers(0, 4))
    )


def _transform(image: torch.Tensor, hflip: bool, vflip: bool, quarter_turns: int) -> torch.Tensor:
    """(C, H, W): flip left-right, then up-down, then rotate counter-clockwise ``quarter_turns`` times."""
    if hflip:
        image = image.flip(-1)
    if vflip:
        image = image.flip(-2)
    return torch.rot90(image, quarter_turns, dims=(-2, -1))


def apply_augmentation(sample: dict[str, torch.Tensor], augmentation: Augmentation) -> dict[str, torch.Tensor]:
    """A new sample dict with the LR group and the Ref group each transformed by its own draw."""
    out = dict(sample)
    a = augmentation
    for key in LR_GROUP:
        out[key] = _transform(sample[key], a.lr_hflip, a.lr_vflip, a.lr_quarter_turns).contiguous()
    for key in REF_GROUP:
        out[key] = _transform(sample[key], a.ref_hflip, a.ref_vflip, a.ref_quarter_turns).contiguous()
    return out
