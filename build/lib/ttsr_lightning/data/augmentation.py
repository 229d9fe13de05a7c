"""The official training augmentation (``RandomFlip`` then ``RandomRotate`` in ``dataset/cufed.py``).

Two groups are transformed independently: the LR group (``lr``, ``lr_up``, ``hr``) and the Ref group
(``ref``, ``ref_down_up``). Draw order, as the official code: four fair coins (LR-group horizontal flip,
Ref-group horizontal flip, LR-group vertical flip, Ref-group vertical flip), then a quarter-turn count
k1 in {0..3} for the LR group and an independent k2 for the Ref group. Each (H, W, C) array goes
through ``np.fliplr``, then ``np.flipud``, then ``np.rot90(k)`` (counter-clockwise), as in the
official code.

The caller passes the per-sample generator (``seeding.augmentation_generator(seed, epoch, index)``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

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


def _transform(array: np.ndarray, hflip: bool, vflip: bool, quarter_turns: int) -> np.ndarray:
    """(H, W, C): flip left-right, then up-down, then rotate counter-clockwise ``quarter_turns`` times."""
    if hflip:
        array = np.fliplr(array)
    if vflip:
        array = np.flipud(array)
    return np.rot90(array, quarter_turns)


def apply_augmentation(sample: dict[str, np.ndarray], augmentation: Augmentation) -> dict[str, np.ndarray]:
    """A new sample of (H, W, C) arrays (views) with each group transformed by its own draw."""
    a = augmentation
    out = {key: _transform(sample[key], a.lr_hflip, a.lr_vflip, a.lr_quarter_turns) for key in LR_GROUP}
    out.update(
        {key: _transform(sample[key], a.ref_hflip, a.ref_vflip, a.ref_quarter_turns) for key in REF_GROUP}
    )
    return out
