"""Every random choice of the data pipeline, each from its own generator seeded by explicit keys.

Nothing here reads global or per-worker random state, so a run draws the same samples, order and
references with any number of loader workers, and a resumed run draws what an uninterrupted one would.
The first word of each key names a stream, so the streams differ for the same seed.
"""

from __future__ import annotations

import hashlib

import numpy as np

_AUGMENTATION = 0xA06
_SHUFFLE = 0x5F1
_SPLIT = 0x5B1
_REFERENCE = 0x2EF
_BUILD = 0xB1D


def augmentation_generator(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Crops and flips/rotations of training sample ``index`` in ``epoch``."""
    return np.random.default_rng([_AUGMENTATION, seed, epoch, index])


def shuffle_generator(seed: int, epoch: int) -> np.random.Generator:
    """Order of the training samples in ``epoch``."""
    return np.random.default_rng([_SHUFFLE, seed, epoch])


def split_generator(seed: int) -> np.random.Generator:
    """Which training pairs are held out for validation."""
    return np.random.default_rng([_SPLIT, seed])


def reference_generator(seed: int, index: int) -> np.random.Generator:
    """Which reference test image ``index`` gets when a test set picks one at random."""
    return np.random.default_rng([_REFERENCE, seed, index])


def build_generator(seed: int, *names: str) -> np.random.Generator:
    """A choice of the dataset builder (``photo_dataset.py``) keyed by ``names``: which albums are
    tested (``"split"``), the order a test album's photos are tried in as group HRs (``"test"``, the
    album), which photos a photo is matched against when its pool is too large (its path, the pool)."""
    keys = [int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") for name in names]
    return np.random.default_rng([_BUILD, seed, *keys])
