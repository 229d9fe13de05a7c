"""The photographs the protocol fixtures were measured on (tests/fixtures/protocols/), made the same way
by the fixture generator and by the tests. Needs only numpy, Pillow and scikit-image.

HR: the scikit-image photograph (``skimage.data.<name>()``, uint8 RGB) cropped top-left to sides that
are multiples of 4. SR: that HR PIL-bicubic to a quarter of each side, then PIL-bicubic back to the HR
size (uint8 RGB): a bicubic x4 "super-resolution", what a saved SR PNG of it holds.
"""

from __future__ import annotations

import hashlib

import numpy as np
import skimage.data
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
SCALE = 4


def photograph(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(HR, SR) of one photograph, each (H, W, 3) uint8 RGB."""
    pixels = getattr(skimage.data, name)()
    height, width = (side // SCALE * SCALE for side in pixels.shape[:2])
    hr = np.ascontiguousarray(pixels[:height, :width])
    low = Image.fromarray(hr).resize((width // SCALE, height // SCALE), Image.Resampling.BICUBIC)
    sr = np.array(low.resize((width, height), Image.Resampling.BICUBIC))
    return hr, sr


def digest(image: np.ndarray) -> str:
    """SHA-256 of an image's shape and bytes (C order): the fixtures name the exact pixels they measured."""
    return hashlib.sha256(str(image.shape).encode() + np.ascontiguousarray(image).tobytes()).hexdigest()
