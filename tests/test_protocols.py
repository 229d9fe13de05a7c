"""Protocols: each convention's PSNR/SSIM equals the value its own codebase's metric code gives on real
photographs (1e-6 dB and SSIM; how those values were computed: tests/fixtures/protocols/README.md), and
the protocol files are complete and consistent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from helpers.protocol_values import PHOTOS, THEIR_VALUES, TOLERANCE, photographs
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.metrics import psnr
from ttsr_lightning.protocols import PROTOCOL_DIR, available_protocols, load_protocols


def as_pixels(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float64 on [0, 255]."""
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).to(torch.float64)


def as_network_output(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1], as the generator's output would hold it."""
    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float() / 127.5 - 1.0


def test_every_protocol_has_values_from_its_codebase() -> None:
    assert set(THEIR_VALUES) == set(available_protocols())
    assert all(set(photos) == set(PHOTOS) for photos in THEIR_VALUES.values())
    assert len({photographs()[photo][0].shape for photo in PHOTOS}) == len(PHOTOS)  # all sizes differ


@pytest.mark.parametrize("name", list(THEIR_VALUES))
@pytest.mark.parametrize("photo", PHOTOS)
def test_each_protocol_equals_its_codebase_on_real_photographs(name: str, photo: str) -> None:
    (protocol,) = load_protocols(name)
    hr, sr = photographs()[photo]
    expected_psnr, expected_ssim = THEIR_VALUES[name][photo]
    # decoded 8-bit files (score) and network outputs in [-1, 1] (evaluate) measure the same
    psnr, ssim = protocol.measure_pixels(as_pixels(sr), as_pixels(hr))
    assert psnr.item() == pytest.approx(expected_psnr, abs=TOLERANCE)
    assert ssim.item() == pytest.approx(expected_ssim, abs=TOLERANCE)
    assert protocol.psnr(as_network_output(sr), as_network_output(hr)).item() == pytest.approx(
        expected_psnr, abs=TOLERANCE
    )
    assert protocol.ssim(as_network_output(sr), as_network_output(hr)).item() == pytest.approx(
        expected_ssim, abs=TOLERANCE
    )


def test_a_batch_measures_each_image_as_alone() -> None:
    """The float32 means that the official and mmagic PSNRs repeat are per image, whatever the batch."""
    hr, sr = photographs()["astronaut"]
    flipped = as_pixels(sr).flip(-1)
    batch_sr, batch_hr = torch.cat([as_pixels(sr), flipped]), torch.cat([as_pixels(hr), as_pixels(hr)])
    for colour, crop in (("y_ttsr", 0), ("rgb", 4)):
        alone = [psnr(one, as_pixels(hr), colour, crop).item() for one in (as_pixels(sr), flipped)]
        assert psnr(batch_sr, batch_hr, colour, crop).tolist() == alone
    assert psnr(as_pixels(hr), as_pixels(hr), "rgb", 4).item() == float("inf")


def test_the_conventions_differ_by_up_to_1_5_db_on_the_same_images() -> None:
    """The conventions' spread, measured: official vs BasicSR vs mmagic on the same three photographs."""
    means = {}
    for protocol in load_protocols("ttsr_official", "basicsr", "mmagic"):
        values = [
            protocol.measure_pixels(as_pixels(photographs()[p][1]), as_pixels(photographs()[p][0]))[0]
            for p in ("astronaut", "coffee", "chelsea")
        ]
        means[protocol.name] = float(torch.cat(values).mean())
    assert means["ttsr_official"] - means["basicsr"] == pytest.approx(0.053, abs=0.002)
    assert means["ttsr_official"] - means["mmagic"] == pytest.approx(1.527, abs=0.002)


def test_every_protocol_file_is_complete_and_all_lists_them() -> None:
    names = available_protocols()
    assert names == ["ttsr_official", "ttsr_stitched", "basicsr", "mmagic", "masa"]  # all.yaml's order
    files = {path.stem for path in PROTOCOL_DIR.glob("*.yaml")} - {"all"}
    assert set(names) == files  # all.yaml lists every protocol file
    assert yaml.safe_load((PROTOCOL_DIR / "all.yaml").read_text())["defaults"] == names
    for protocol in load_protocols("all"):
        assert protocol.source and protocol.known, protocol.name  # where it comes from, what it produced
    references = {protocol.name: protocol.cufed5_reference for protocol in load_protocols("all")}
    assert references == {
        "ttsr_official": "L1",
        "ttsr_stitched": "stitched",
        "basicsr": "L1",
        "mmagic": "L1",
        "masa": "stitched_masa",
    }


def test_unknown_protocols_are_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown protocol 'nope'; expected one of \['ttsr_official'"):
        load_protocols("nope")
