"""PSNR / SSIM that each codebase's own metric code gives on real photographs, for the protocol tests.

The values, the checksums of the photographs they were measured on, and the command and environment
that produced them are in tests/fixtures/protocols/their_values.json (written by generate.py beside
it; README.md there says how to run it); tests/helpers/photographs.py makes the photographs.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from helpers.photographs import digest, photograph

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "protocols" / "their_values.json"
_DOCUMENT = json.loads(FIXTURE.read_text())

# protocol -> photograph -> (PSNR dB, SSIM), as each codebase's code printed them
THEIR_VALUES: dict[str, dict[str, tuple[float, float]]] = {
    protocol: {photo: (value["psnr"], value["ssim"]) for photo, value in photos.items()}
    for protocol, photos in _DOCUMENT["values"].items()
}
PHOTOS = tuple(_DOCUMENT["photographs"])
# every protocol equals its codebase's code within this, PSNR (dB) and SSIM alike
TOLERANCE = 1e-6


@functools.cache
def photographs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(HR, SR) of every fixture photograph, (H, W, 3) uint8 RGB: the pixels the values were measured on."""
    pairs = {}
    for name, expected in _DOCUMENT["photographs"].items():
        hr, sr = photograph(name)
        if (digest(hr), digest(sr)) != (expected["hr_sha256"], expected["sr_sha256"]):
            raise AssertionError(
                f"{name}: the photograph differs from the one {FIXTURE} was measured on "
                "(another scikit-image or Pillow?); regenerate the fixture (README.md there)"
            )
        pairs[name] = (hr, sr)
    return pairs
