"""A small collection of real photographs for the dataset builder's tests: four of scikit-image's
photographs cut into albums of seven shots each by ``experiments/own_photos.py`` (the README's
demonstration, smaller), with its three bad files (a truncated JPEG, a thumbnail, a byte-for-byte copy),
and the cameraman directly in the folder: a photo without an album that matches none of the others."""

from __future__ import annotations

import sys
from pathlib import Path

import skimage.data
from PIL import Image

from ttsr_lightning.config_paths import REPO_ROOT
from ttsr_lightning.data.photo_dataset import BuildSettings

sys.path.insert(0, str(REPO_ROOT / "experiments"))
from own_photos import write_collection  # noqa: E402

ALBUMS = ("astronaut", "chelsea", "brick", "ihc")
PER_ALBUM = 7
# one album of the five units (four albums, the cameraman) is tested: with seed 0, ihc
SETTINGS = BuildSettings(patch_size=64, test_fraction=0.25, workers=1)
OPTIONS = ["--patch-size", "64", "--test-fraction", "0.25"]
BAD_FILES = {
    "astronaut/truncated.jpg": "unreadable: cannot decode image (image file is truncated",
    "chelsea/thumbnail.png": "too small: 48x36 px; expected at least 64 px on each side",
    "chelsea/copy_of_chelsea_01.jpg": "duplicate of chelsea/chelsea_01.jpg (the same pixels)",
    "camera.png": "no matching candidate (best ",
}


def write_test_collection(folder: Path) -> Path:
    """The collection in ``folder``; returns ``folder``."""
    write_collection(folder, PER_ALBUM, ALBUMS)
    Image.fromarray(skimage.data.camera()).save(folder / "camera.png")
    return folder


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative POSIX path -> its bytes)."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
