"""Two-process CPU DDP (gloo) through the real CLI: finite losses, metrics reduced over both ranks,
checkpoints written once. The CLI runs as a subprocess: Lightning's DDP launcher re-executes its
command line, which must never be the pytest process itself (it would rerun the whole test session)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.config import TINY
from ttsr_lightning.data.cufed5 import CUFED5Dataset
from ttsr_lightning.metrics import y_psnr
from ttsr_lightning.system import TTSRSystem


@pytest.mark.slow  # two processes: minutes on 2 cores
def test_two_process_ddp_trains_and_reduces_metrics_over_both_ranks(
    tmp_path: Path, sample_data_dir: Path
) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "ttsr_lightning",
        "trainer=ddp_cpu",
        f"hydra.run.dir={run_dir}",
        f"paths.data_dir={sample_data_dir}",
        *TINY,
        "trainer.limit_val_batches=null",  # every validation image: the mean below covers all six
        "test=false",
        "logger=csv",
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    summary = json.loads((run_dir / "run.json").read_text())
    metrics = summary["metrics"]
    for key in ("train/loss", "train/loss_adversarial", "critic/gradient_penalty", "val/psnr"):
        assert math.isfinite(metrics[key]), key

    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and not any("-v" in name for name in checkpoints), checkpoints
    assert len(list(run_dir.rglob("config.yaml"))) == 1  # the Hydra config, written by rank 0 only

    # The logged validation PSNR is the mean over all six sample images, three evaluated on each rank.
    system = TTSRSystem.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", map_location="cpu").eval()
    dataset = CUFED5Dataset(root=str(sample_data_dir / "sample" / "CUFED" / "test" / "CUFED5"), ref_level=1)
    values = []
    with torch.no_grad():
        for index in range(len(dataset)):
            item = {k: v[None] if torch.is_tensor(v) else v for k, v in dataset[index].items()}
            values.append(float(y_psnr(system(item).sr, item["hr"])[0]))
    assert len(values) == 6
    assert metrics["val/CUFED5_L1/psnr"] == pytest.approx(sum(values) / len(values), abs=1e-4)
    assert metrics["val/CUFED5_L1/psnr"] != pytest.approx(sum(values[0::2]) / 3, abs=1e-4)
