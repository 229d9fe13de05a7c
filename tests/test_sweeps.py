"""Beyond one machine: a Hydra sweep through the submitit launcher (``submitit_local`` runs each member
as its own subprocess job, the code path ``submitit_slurm`` gives SLURM), every member writing its run,
the sweep collected into a paper table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.config import SMOKE
from ttsr_lightning.config_paths import REPO_ROOT

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the [cluster] extra")


@pytest.mark.slow  # ~70 s on 2 cores
def test_a_submitit_sweep_runs_each_member_as_a_job_and_collects_into_a_table(
    tmp_path: Path, sample_data_dir: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable, "-m", "ttsr_lightning", "--multirun", "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=20", f"hydra.sweep.dir={sweep_dir}", f"paths.data_dir={sample_data_dir}",
        "+experiment=ablation_tt_c80,ablation_tt_c96", *SMOKE,
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    jobs = sorted(path for path in (sweep_dir / ".submitit").iterdir() if path.name.isdigit())
    assert len(jobs) == 2  # two submitit jobs, each its own process
    runs = {json.loads(path.read_text())["name"]: path.parent for path in sweep_dir.glob("*/run.json")}
    assert set(runs) == {"ablation_tt_c80", "ablation_tt_c96"}
    for run in runs.values():
        assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "results.json").is_file()

    collect = [sys.executable, str(REPO_ROOT / "experiments" / "collect.py"), "table3_csfi", str(sweep_dir)]
    table = subprocess.run(
        [*collect, "--out", str(tmp_path / "results")], capture_output=True, text=True, check=True
    )
    rows = {
        line.split("|")[1].strip(): line for line in table.stdout.splitlines() if line.startswith("| Base")
    }
    assert "–" not in rows["Base+TT(C80)"] and "–" not in rows["Base+TT(C96)"]  # filled from the sweep
    assert "missing runs for: ablation_tt, ttsr_rec" in table.stderr  # the rows other tables train
