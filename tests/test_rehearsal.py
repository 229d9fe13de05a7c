"""``debug=rehearse``: the recipe as configured, each epoch shortened, stopped by SIGTERM and continued by
the command it prints, in one run folder; a report predicts the full recipe's wall time."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.config import compose_config
from helpers.dataset_trees import make_paper_tree
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.preflight import preflight_training
from ttsr_lightning.rehearsal import (
    RecipeShape,
    RehearsalSettings,
    Timings,
    batch_timings,
    predicted_seconds,
    render_report,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_recipe_shape_is_read_from_the_config_and_the_data(tmp_path: Path) -> None:
    data_dir = make_paper_tree(tmp_path / "data", pairs=19)
    cfg = compose_config(
        tmp_path,
        data_dir,
        ["+experiment=ttsr", "model.generator.vgg_weights=random", "logger=none"],
        tiny=False,
    )
    shape = RecipeShape.from_config(cfg, preflight_training(cfg, tmp_path / "run"))
    assert (shape.warmup_epochs, shape.max_epochs, shape.processes) == (2, 52, 1)
    assert shape.batches_per_epoch == 3  # 19 pairs in batches of 9, the last one short
    assert shape.validations == 5  # every 10 of 52 epochs
    assert shape.validation_sets == {"CUFED5_L1": 3}
    assert shape.test_sets == {
        "CUFED5_stitched": 3,
        "CUFED5_L1": 3,
        "CUFED5_all5": 3,
        "Sun80": 3,
        "Urban100": 3,
        "Manga109": 3,
    }
    assert shape.last_checkpoints == 52  # an epoch end each; 52 x 3 batches never reach every_n_batches=500


def test_the_prediction_adds_up_the_recipe_from_the_measured_times() -> None:
    shape = RecipeShape(
        warmup_epochs=2,
        max_epochs=52,
        batches_per_epoch=1319,
        validations=5,
        processes=2,
        validation_sets={"CUFED5_L1": 126},
        test_sets={"CUFED5_L1": 126, "Sun80": 80},
        last_checkpoints=52 + 131,
    )
    timings = Timings(
        warmup_batch=0.2,
        after_warmup_batch=0.5,
        epoch_start_wait=3.0,
        validation_image={"CUFED5_L1": 0.1},
        test_image={"CUFED5_L1": 0.1, "Sun80": 1.0},
        checkpoint_write=2.0,
        startup=30.0,
    )
    parts = predicted_seconds(shape, timings)
    assert parts == pytest.approx(
        {
            "start-up (imports, pre-flight, models, data)": 30.0,
            "training, warm-up": 2 * 1319 * 0.2,
            "training, after warm-up": 50 * 1319 * 0.5,
            "waiting for data at epoch starts": 52 * 3.0,
            "validation": 5 * 63 * 0.1,  # each of the two processes evaluates half the images
            "test": 63 * 0.1 + 40 * 1.0,
            "checkpoints": (52 + 131 + 5) * 2.0,
        }
    )
    assert math.isclose(sum(parts.values()), 30 + 527.6 + 32975 + 156 + 31.5 + 46.3 + 376)


def test_batch_timings_set_aside_each_parts_first_batch_of_a_phase() -> None:
    def batch(run_batch: int, warmup: bool, seconds: float) -> dict:
        return {"run_batch": run_batch, "warmup": warmup, "seconds": seconds}

    part1 = {
        "train": [batch(1, True, 30.0), batch(2, True, 20.0), batch(3, False, 35.0), batch(4, False, 24.0)]
    }
    part2 = {"train": [batch(5, False, 33.0)]}
    assert batch_timings([part1, part2]) == {
        "warm-up": {"batches": 2, "steady_seconds": 20.0, "first_seconds": 30.0},
        "after warm-up": {"batches": 3, "steady_seconds": 24.0, "first_seconds": 35.0},
    }


def test_rehearsal_settings_are_checked() -> None:
    assert RehearsalSettings.from_config({"batches_per_epoch": 2}).batches_per_epoch == 2
    with pytest.raises(ConfigError, match=r"rehearsal.test_batches: expected an integer >= 1, got 0"):
        RehearsalSettings.from_config({"test_batches": 0})
    with pytest.raises(ConfigError, match=r"rehearsal: unknown key\(s\) \['batches'\]"):
        RehearsalSettings.from_config({"batches": 1})


@pytest.mark.slow  # the paper's model on the CPU: ~5 min on 2 cores
def test_the_paper_recipe_rehearses_on_a_cufed_shaped_tree(tmp_path: Path) -> None:
    data_dir = make_paper_tree(tmp_path / "data", pairs=18)
    environment = {
        k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "TTSR_SHOW_TRACEBACK")
    }
    command = [
        sys.executable,
        "-m",
        "ttsr_lightning",
        "+experiment=ttsr",
        "debug=rehearse",
        f"paths.data_dir={data_dir}",
        "model.generator.vgg_weights=random",  # no ImageNet weights here
    ]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env={**environment, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO_ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=600,  # the rehearsal's promise on this CPU
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [run_dir] = (tmp_path / "outputs" / "rehearsals" / "ttsr").iterdir()  # one run folder
    assert "Predicted wall time of the full recipe on this machine:" in result.stdout
    assert "Peak memory: host" in result.stdout and "Disk: one checkpoint" in result.stdout
    report = json.loads((run_dir / "rehearsal.json").read_text())
    assert report["recipe"]["warmup_epochs"] == 2 and report["recipe"]["max_epochs"] == 52
    assert report["recipe"]["batches_per_epoch"] == 2  # 18 pairs in batches of 9
    assert report["batch_seconds"]["warm-up"]["batches"] == 2
    assert report["batch_seconds"]["after warm-up"]["batches"] == 3
    assert report["sigterm"] == {"status": 143, "stopped_after_batch": 4, "continued_with_batch": 5}
    assert set(report["test_image_seconds"]) == set(report["recipe"]["test_sets"])  # every test set
    assert set(report["validation_image_seconds"]) == {"CUFED5_L1"}
    assert (
        report["predicted_total_seconds"] > 52 * 2 * report["batch_seconds"]["warm-up"]["first_seconds"] / 2
    )
    # the pre-flight's estimate of a checkpoint is its size within 1 % (weights and Adam moments)
    assert (
        abs(report["checkpoint_bytes"] - report["checkpoint_estimate_bytes"])
        < 0.01 * report["checkpoint_bytes"]
    )
    assert report["checkpoints_kept"] == 3 and report["host_peak_bytes"] > 2**30
    assert (run_dir / "run.json").is_file() and (run_dir / "results.md").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file() and len(list(run_dir.glob(".hydra/resumed_*"))) == 1
    assert render_report(report) == (run_dir / "rehearsal.md").read_text()
