"""SIGTERM (a scheduler's time limit, a preemption, a requeue) stops a real training subprocess with a
checkpoint of the batch it was training, a non-zero exit status and a W&B run marked preempted; the
same command run again (a requeued SLURM job) continues the same run folder and W&B run, and ends
bit-identical to an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.sigkill import (
    REPO_ROOT,
    TINY_CLI,
    assert_same_training_state,
    cli_env,
    run_and_kill,
    run_cli,
)
from helpers.wandb_records import OfflineRun, offline_runs
from ttsr_lightning.cli import PREEMPTED_EXIT_CODE


def _best(checkpoint: dict) -> tuple[float, list[str]]:
    [state] = [v for k, v in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint")]
    return float(state["best_model_score"]), sorted(Path(path).name for path in state["best_k_models"])


def _loss_steps(run: OfflineRun) -> list[int]:
    return [row["trainer/global_step"] for row in run.history if "train/loss" in row]


@pytest.mark.slow  # three training subprocesses with W&B
def test_sigterm_checkpoints_the_batch_and_the_same_command_continues_the_run(
    tmp_path: Path, sample_data_dir: Path
) -> None:
    common = [
        *TINY_CLI,
        f"paths.data_dir={sample_data_dir}",
        f"paths.log_dir={tmp_path / 'outputs'}",
        "name=preempt",
        "data.train.num_workers=1",  # the signal reaches the loader worker too, as under SLURM
        "optim.lr_milestones=[1]",
        "logger=wandb",
        "callbacks.resume_checkpoint.every_n_batches=1000",  # the SIGTERM checkpoint is the only one
    ]
    env = {**cli_env(), "WANDB_MODE": "offline"}
    run_cli([*common, f"hydra.run.dir={tmp_path / 'whole'}"], REPO_ROOT, env)

    job = {**env, "SLURM_JOB_ID": "4242"}
    stopped = run_and_kill(common, tmp_path / "markers", REPO_ROOT, job, sigterm_before_batch=6)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.output[-4000:]
    assert "error: stopped by SIGTERM at epoch 1 after 6 training batches" in stopped.output
    [run_dir] = (tmp_path / "outputs" / "preempt").glob("*_slurm4242")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["callbacks"]["ResumeCheckpoint"]["batches_seen"] == 6  # the batch it was training
    assert checkpoint["epoch"] == 1
    [first] = offline_runs(run_dir)
    assert first.exit_code == PREEMPTED_EXIT_CODE and first.preempting  # W&B: preempted, not finished
    assert not (run_dir / "run.json").exists()

    run_cli(common, REPO_ROOT, {**job, "SLURM_RESTART_COUNT": "1"})  # requeued: the same command
    whole = torch.load(
        tmp_path / "whole" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert_same_training_state(whole, resumed)
    assert _best(resumed) == _best(whole)  # ModelCheckpoint's best-k state came back with the run
    assert len(list((run_dir / "checkpoints").glob("epoch*.ckpt"))) == 1  # save_top_k=1, no stray best
    assert (run_dir / "run.json").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()  # the first config stays, the resumed beside it
    assert len(list(run_dir.glob(".hydra/resumed_*/config.yaml"))) == 1
    first, second = offline_runs(run_dir)
    assert first.run_id == second.run_id == (run_dir / "wandb_run_id").read_text().strip()
    assert second.exit_code == 0 and not second.preempting
    [uninterrupted] = offline_runs(tmp_path / "whole")
    assert _loss_steps(first) + _loss_steps(second) == _loss_steps(uninterrupted)  # no gap, no repeat
