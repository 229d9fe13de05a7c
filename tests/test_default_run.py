"""`make train` as a new user runs it: the default experiment shows reference-based super-resolution,
and gives the miniature study's committed number for its row (TTSR with all losses, seed 0), so the
study's table comes from the code as it is.

The command is the README's, unchanged (``python -m ttsr_lightning``, started in an empty folder: the
sample set is built there; W&B offline, its default, which needs no network or account), so this takes
the default run's few minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers.committed_study import assert_reproduces, committed_row
from helpers.wandb_records import offline_runs


@pytest.mark.slow
def test_the_default_run_beats_bicubic_and_its_reference_beats_none(tmp_path: Path) -> None:
    env = dict(os.environ)
    for setting in ("WANDB_MODE", "TTSR_DATA_DIR"):  # the test suite's settings, not a new user's
        env.pop(setting, None)
    result = subprocess.run(
        [sys.executable, "-m", "ttsr_lightning"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "default").iterdir()
    summary = json.loads((run / "run.json").read_text())
    margins = {row["set"]: row for row in summary["margins"]}
    assert margins["CUFED5_L1"]["psnr_over_bicubic"] > 0
    assert margins["CUFED5_L1"]["psnr_over_lr_reference"] > 0
    # the default recipe is the miniature study's TTSR row: its committed numbers come from this code
    study = committed_row("TTSR (all losses)", seed=0)
    assert_reproduces(summary["metrics"]["test/CUFED5_L1/psnr"], summary["machine"], study)
    results = json.loads((run / "results.json").read_text())
    assert {row["set"]: row for row in results["margins"]}["CUFED5_L1"] == margins["CUFED5_L1"]
    # the end-of-run summary prints both margins
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("CUFED5_L1 "))
    assert f"{margins['CUFED5_L1']['psnr_over_bicubic']:+.3f} dB" in line
    assert f"{margins['CUFED5_L1']['psnr_over_lr_reference']:+.3f} dB" in line
    # the texture-transfer panels: SR with the LR as reference beside SR with the L1 reference
    panels = sorted((run / "panels" / "test" / "transfer").glob("CUFED5_*.png"))
    assert len(panels) == 4 and Image.open(panels[0]).width > 6 * 160
    # and the offline W&B run a user syncs later, finished
    (wandb_run,) = offline_runs(run)
    assert wandb_run.exit_code == 0 and wandb_run.run_id == (run / "wandb_run_id").read_text().strip()
