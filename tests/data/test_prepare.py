"""The preparation CLI: reports every problem, exits non-zero, never writes; builds the sample set (and
removes a killed writer's leftovers there)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.file_faults import killed_writers_leftover
from ttsr_lightning.data import prepare


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_complete_datasets_are_reported_ready(
    cufed_train: Path,
    cufed5: Path,
    sun80: Path,
    image_folder: Callable[[str, int], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    folders = {
        "cufed": cufed_train,
        "cufed5": cufed5,
        "sun80": sun80,
        "urban100": image_folder("Urban100", 3),
        "manga109": image_folder("Manga109", 3),
    }
    for dataset, folder in folders.items():
        before = snapshot(folder)
        assert prepare.main([dataset, str(folder)]) == 0, capsys.readouterr().err
        assert f"{dataset} at {folder}: ready" in capsys.readouterr().out
        assert snapshot(folder) == before


def test_a_count_other_than_the_releases_is_a_note(
    cufed_train: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A subset, or a dataset of one's own laid out as CUFED, is ready; a note says it is no release."""
    assert prepare.main(["cufed", str(cufed_train)]) == 0
    out = capsys.readouterr().out
    assert "note: CUFED: 4 pairs; the released set has 11,871 (a subset, or an incomplete download?)" in out
    assert f"cufed at {cufed_train}: ready" in out


def test_every_layout_problem_is_listed_and_nothing_written(
    cufed5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cufed5 / "000_3.png").unlink()
    (cufed5 / "001_5.png").unlink()
    before = snapshot(cufed5.parent)
    assert prepare.main(["cufed5", str(cufed5)]) == 1
    err = capsys.readouterr().err
    assert "cufed5 at" in err and "2 problem(s)" in err
    assert "group 000 lacks 000_3" in err and "group 001 lacks 001_5" in err
    assert snapshot(cufed5.parent) == before


def test_unreadable_images_are_found_even_where_the_default_reference_would_not_read_them(
    cufed5: Path, sun80: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cufed5 / "001_4.png").write_bytes(b"garbage")  # level 4: read by no level-1 item
    assert prepare.main(["cufed5", str(cufed5)]) == 1
    assert "001_4.png: cannot decode image" in capsys.readouterr().err
    for match in (sun80 / "Sun_Hays_SR_scenematches" / "Image_02.jpg").iterdir():
        match.write_bytes(match.read_bytes()[:200])  # truncate every candidate reference
    assert prepare.main(["sun80", str(sun80)]) == 1
    err = capsys.readouterr().err
    assert "4 problem(s)" in err and err.count("Image_02.jpg/match_0") == 4


def test_small_training_image_is_reported(cufed_train: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    Image.new("RGB", (120, 160)).save(cufed_train / "input" / "000003.png")
    assert prepare.main(["cufed", str(cufed_train)]) == 1
    assert "000003.png: HR (the training patch size is 160) is 120x160 px" in capsys.readouterr().err


def test_missing_folder_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert prepare.main(["urban100", str(tmp_path / "Urban100")]) == 1
    assert "Urban100: folder not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_sample_refuses_a_folder_holding_another_cufed(
    cufed_train: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert prepare.main(["sample", str(cufed_train.parent.parent)]) == 1
    assert "exists but is not the embedded sample set" in capsys.readouterr().err


def test_sample_is_built_and_checked_from_the_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ttsr_lightning.data.prepare", "sample", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"cufed at {tmp_path / 'CUFED' / 'train'}: ready" in result.stdout
    assert f"cufed5 at {tmp_path / 'CUFED' / 'test' / 'CUFED5'}: ready" in result.stdout


def test_sample_removes_a_killed_writers_leftover_in_its_folder(
    sample_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = sample_data_dir / "sample"
    leftover = killed_writers_leftover(root, "PROVENANCE.md")
    assert prepare.main(["sample", str(root)]) == 0, capsys.readouterr().err
    assert not leftover.exists() and [path.name for path in root.iterdir()] == ["CUFED"]
