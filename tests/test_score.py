"""score: any method's saved SR images, scored under every protocol from the command line, equal each
convention's own metric code (tests/fixtures/protocols/README.md says how those values were computed)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from helpers.file_faults import killed_writers_leftover
from helpers.lpips_reference import (
    REFERENCE_VALUES,
    SEEDED_WEIGHTS_SHA256,
    photo_pairs,
    seeded_alexnet_state_dict,
    weights_digest,
)
from helpers.protocol_values import PHOTOS, THEIR_VALUES, TOLERANCE, photographs
from ttsr_lightning import lpips_setting as lpips_module
from ttsr_lightning.config_paths import CONFIG_DIR
from ttsr_lightning.pretrained import ALEXNET, sha256_of_file
from ttsr_lightning.score import score


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """sr/<photo>.png and hr/<photo>.png (+ references to ignore; one HR 3 px wider than its SR)."""
    root = tmp_path_factory.mktemp("score")
    sr_dir, hr_dir = root / "sr", root / "hr"
    sr_dir.mkdir(), hr_dir.mkdir()
    for photo, (hr, sr) in photographs().items():
        Image.fromarray(sr).save(sr_dir / f"{photo}.png")
        if photo == "coffee":  # an HR whose width is not a multiple of 4: cropped to the SR's
            hr = np.concatenate([hr, hr[:, -3:]], axis=1)
        Image.fromarray(hr).save(hr_dir / f"{photo}.png")
        Image.fromarray(hr[:40, :40]).save(hr_dir / f"{photo}_ref.png")  # not an SR's stem: ignored
    return sr_dir, hr_dir


def run_score(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "TTSR_SHOW_TRACEBACK")}
    command = [sys.executable, "-m", "ttsr_lightning.score", *arguments]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_every_protocol_from_the_command_line_equals_its_codebase(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    sr_dir, hr_dir = folders
    out = tmp_path / "scores.csv"
    result = run_score(f"sr={sr_dir}", f"hr={hr_dir}", f"out={out}", "protocol=all", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out, newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0])[:4] == ["image", "protocol", "psnr", "ssim"]
    assert len(rows) == len(PHOTOS) * 5  # every photo under every protocol
    by_key = {(row["image"], row["protocol"]): row for row in rows}
    for protocol, photos in THEIR_VALUES.items():
        for photo, (psnr, ssim) in photos.items():
            row = by_key[(photo, protocol)]
            assert float(row["psnr"]) == pytest.approx(psnr, abs=TOLERANCE), (protocol, photo)
            assert float(row["ssim"]) == pytest.approx(ssim, abs=TOLERANCE), (protocol, photo)
    assert by_key[("coffee", "ttsr_official")]["hr_cropped"] == "True"
    summary = json.loads((tmp_path / "scores.summary.json").read_text())["protocols"]
    assert [entry["protocol"] for entry in summary][0] == "ttsr_official"
    official = next(entry for entry in summary if entry["protocol"] == "ttsr_official")
    assert official["psnr"] == pytest.approx(
        np.mean([v[0] for v in THEIR_VALUES["ttsr_official"].values()]), abs=TOLERANCE
    )
    assert (
        f"| ttsr_official | {len(PHOTOS)} |" in result.stdout
        and f"| mmagic | {len(PHOTOS)} |" in result.stdout
    )


def test_missing_hr_and_sizes_that_do_not_fit_are_one_line_errors(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    sr_dir, hr_dir = folders
    lonely = tmp_path / "sr"
    lonely.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(lonely / "nobody.png")
    result = run_score(f"sr={lonely}", f"hr={hr_dir}", f"out={tmp_path / 'x.csv'}", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"error: hr: {hr_dir} has no image named like the SR image(s) nobody.png"
    )
    (lonely / "nobody.png").unlink()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(lonely / "astronaut.png")
    result = run_score(f"sr={lonely}", f"hr={hr_dir}", f"out={tmp_path / 'x.csv'}", cwd=tmp_path)
    assert result.returncode == 2 and "SR is 16x16 px but" in result.stderr and "is 512x512" in result.stderr
    result = run_score(
        f"sr={sr_dir}", f"hr={hr_dir}", f"out={tmp_path / 'x.csv'}", "protocol=nope", cwd=tmp_path
    )
    assert result.returncode == 2 and "Could not find 'protocol/nope'" in result.stderr


def test_lpips_of_saved_images_equals_the_reference_implementation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """score's LPIPS column on PNGs of the photographs equals what the lpips package gave on the same
    (seeded) AlexNet (tests/helpers/lpips_reference.py), under every protocol; the mean is summarised."""
    if weights_digest(seeded_alexnet_state_dict()) != SEEDED_WEIGHTS_SHA256:
        pytest.skip("this torch draws other seeded weights than those the reference values were made on")
    alexnet = tmp_path / "alexnet-seeded.pth"
    torch.save(seeded_alexnet_state_dict(), alexnet)
    monkeypatch.setattr(lpips_module, "ALEXNET", dataclasses.replace(ALEXNET, sha256=sha256_of_file(alexnet)))
    sr_dir, hr_dir = tmp_path / "sr", tmp_path / "hr"
    sr_dir.mkdir(), hr_dir.mkdir()
    for name, hr, bicubic, _ in photo_pairs():
        for folder, image in ((hr_dir, hr), (sr_dir, bicubic)):
            pixels = ((image[0] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
            Image.fromarray(pixels).save(folder / f"{name}.png")
    out = tmp_path / "scores.csv"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "score",
            [
                f"sr={sr_dir}",
                f"hr={hr_dir}",
                f"out={out}",
                "protocol=[ttsr_official,mmagic]",
                f"lpips={alexnet}",
            ],
        )
    summary = score(cfg)
    with open(out, newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0])[:5] == ["image", "protocol", "psnr", "ssim", "lpips"] and len(rows) == 3 * 2
    for row in rows:
        assert float(row["lpips"]) == pytest.approx(REFERENCE_VALUES[row["image"]][0], abs=1e-5), row
    expected_mean = np.mean([values[0] for values in REFERENCE_VALUES.values()])
    assert [entry["lpips"] for entry in summary] == pytest.approx([expected_mean] * 2, abs=1e-5)
    document = json.loads((tmp_path / "scores.summary.json").read_text())
    assert document["lpips"].startswith("AlexNet v0.1 (lower is better")
    assert "| protocol | images | PSNR | SSIM | LPIPS ↓ | what |" in capsys.readouterr().out


def test_a_killed_writers_leftover_beside_out_is_removed_at_the_start(tmp_path: Path) -> None:
    sr_dir, hr_dir, out_dir = tmp_path / "sr", tmp_path / "hr", tmp_path / "scores"
    sr_dir.mkdir(), hr_dir.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(hr_dir / "a.png")
    Image.fromarray(255 - pixels).save(sr_dir / "a.png")
    leftover = killed_writers_leftover(out_dir, "x.csv")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("score", [f"sr={sr_dir}", f"hr={hr_dir}", f"out={out_dir / 'x.csv'}", "lpips=false"])
    score(cfg)
    assert sorted(path.name for path in out_dir.iterdir()) == ["x.csv", "x.summary.json"]
    assert not leftover.exists()
