"""experiments/own_photos.py's report: the level table of a built dataset, each run's PSNR per level
beside the LR as reference, and the picture of a test group."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from PIL import Image

from ttsr_lightning.config_paths import REPO_ROOT
from ttsr_lightning.data.photo_dataset import BuildResult

sys.path.insert(0, str(REPO_ROOT / "experiments"))
import own_photos  # noqa: E402


def fake_run(folder: Path, seed: int, l1: float) -> Path:
    """A run folder as training leaves it: results.json (one value per CUFED5 set) and run.json."""
    folder.mkdir(parents=True)
    psnr = {"L1": l1, "L2": 29.5, "L3": 29.4, "L4": 29.3, "L5": 29.2, "LR": 29.0, "stitched": 30.5}
    sets = [{"set": f"CUFED5_{level}", "psnr": value, "ssim": 0.8} for level, value in psnr.items()]
    (folder / "results.json").write_text(json.dumps({"sets": sets}))
    (folder / "run.json").write_text(json.dumps({"seed": seed}))
    return folder


def test_the_tables_hold_the_manifests_levels_and_each_runs_margin(
    built_photos: BuildResult, tmp_path: Path
) -> None:
    levels = built_photos.manifest["levels"]
    rows = own_photos.level_table(built_photos.manifest)
    assert (
        rows[2]
        == f"| L1 | {levels['L1']['mean_matches']:.1f} | {levels['L1']['min']} | {levels['L1']['max']} |"
    )
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| L1", "| L2", "| L3", "| L4", "| L5"]
    runs = [fake_run(tmp_path / "a", 0, 29.75), fake_run(tmp_path / "b", 1, 28.5)]
    table = own_photos.run_table(runs)
    assert table[2] == f"| {runs[0]} (0) | 29.750 | 29.500 | 29.400 | 29.300 | 29.200 | 29.000 | +0.750 |"
    assert table[3].endswith("| 28.500 | 29.500 | 29.400 | 29.300 | 29.200 | 29.000 | -0.500 |")


def test_the_picture_shows_the_hr_and_five_references(
    built_photos: BuildResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = []
    imshow = Axes.imshow

    def recorded(axis: Axes, image: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        shown.append((np.asarray(image), axis))
        return imshow(axis, image, *args, **kwargs)

    monkeypatch.setattr(Axes, "imshow", recorded)
    picture = tmp_path / "figures" / "group.png"
    own_photos.draw_group(built_photos.out, built_photos.manifest, 0, picture)
    group = built_photos.manifest["test"][0]
    assert [reference["level"] for reference in group["references"]] == [1, 2, 3, 4, 5]
    files = [group["hr"]["file"], *(reference["file"] for reference in group["references"])]
    assert len(shown) == len(files) == 6
    lefts = [axis.get_position().x0 for _, axis in shown]
    assert lefts == sorted(lefts)
    for (pixels, axis), file in zip(shown, files, strict=True):  # left to right: the HR, then L1 .. L5
        with Image.open(built_photos.out / file) as image:
            np.testing.assert_array_equal(pixels, np.asarray(image.convert("RGB")), err_msg=file)
        assert axis.get_title().startswith("HR" if file == files[0] else f"L{files.index(file)}:"), file
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.width > 4 * image.height  # six panels in a row
    assert [path.name for path in picture.parent.iterdir()] == ["group.png"]  # written atomically
