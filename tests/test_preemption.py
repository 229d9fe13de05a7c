"""SIGTERM (a scheduler's time limit, a preemption, a requeue) stops a real training subprocess with a
checkpoint of the batch it was training, a non-zero exit status and a W&B run marked preempted; the
same command run again (a requeued SLURM job) continues the same run folder and W&B run, and ends
bit-identical to an uninterrupted run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from helpers.sigkill import (
    MULTISTEP_AT_EPOCH_1,
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
        MULTISTEP_AT_EPOCH_1,
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


@pytest.mark.slow  # two training subprocesses with W&B
def test_outside_slurm_the_printed_command_pasted_as_it_is_continues_the_run_in_its_folder(
    tmp_path: Path, sample_data_dir: Path
) -> None:
    common = [
        *TINY_CLI,
        f"paths.data_dir={sample_data_dir}",
        f"paths.log_dir={tmp_path / 'outputs'}",
        "name=pasted",
        "logger=wandb",
        "callbacks.resume_checkpoint.every_n_batches=1000",  # the SIGTERM checkpoint is the only one
    ]
    env = {**cli_env(), "WANDB_MODE": "offline"}
    stopped = run_and_kill(common, tmp_path / "markers", REPO_ROOT, env, sigterm_before_batch=6)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.output[-4000:]
    [run_dir] = (tmp_path / "outputs" / "pasted").iterdir()
    [line] = [line for line in stopped.output.splitlines() if line.startswith("error: stopped by SIGTERM")]
    message, command = line.split("; continue it with: ")
    assert message.endswith(f"after 6 training batches, saved in {run_dir / 'checkpoints' / 'last.ckpt'}")
    assert command.endswith(f" ckpt_path={run_dir.resolve() / 'checkpoints' / 'last.ckpt'}")

    pasted = subprocess.run(  # as a person pastes it: a shell line, from the same folder
        command, shell=True, executable="/bin/bash", cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert pasted.returncode == 0, pasted.stderr[-4000:]
    assert list((tmp_path / "outputs" / "pasted").iterdir()) == [run_dir]  # one run folder
    resumed = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["callbacks"]["ResumeCheckpoint"]["batches_seen"] == 12  # 3 epochs of 4 batches
    first, second = offline_runs(run_dir)
    assert first.run_id == second.run_id  # one W&B run
    steps = _loss_steps(first) + _loss_steps(second)
    assert (
        len(_loss_steps(first)) == 6 and len(steps) == 12 and steps == sorted(set(steps))
    )  # no gap, no repeat


@pytest.mark.slow  # three training subprocesses
def test_a_killed_run_is_noticed_at_the_next_start_which_says_how_to_continue_it(
    tmp_path: Path, sample_data_dir: Path
) -> None:
    common = [
        *TINY_CLI,
        f"paths.data_dir={sample_data_dir}",
        f"paths.log_dir={tmp_path / 'outputs'}",
        "name=k",
    ]
    killed = run_and_kill(common, tmp_path / "markers", REPO_ROOT, cli_env(), kill_after_batch=3)
    assert killed.returncode == -9
    [killed_dir] = (tmp_path / "outputs" / "k").iterdir()

    again = run_cli(common, REPO_ROOT, cli_env())  # the same command: a new training, and a note
    [note] = [line for line in again.stdout.splitlines() if "stopped before it finished" in line]
    assert f"an earlier run of k, in {killed_dir}, stopped before it finished" in note
    command = note.split("To continue that one instead: ")[1]
    assert len(list((tmp_path / "outputs" / "k").iterdir())) == 2

    pasted = subprocess.run(
        command,
        shell=True,
        executable="/bin/bash",
        cwd=REPO_ROOT,
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    assert pasted.returncode == 0, pasted.stderr[-4000:]
    assert len(list((tmp_path / "outputs" / "k").iterdir())) == 2  # continued in the killed run's folder
    resumed = torch.load(killed_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["callbacks"]["ResumeCheckpoint"]["batches_seen"] == 12
    assert (killed_dir / "run.json").is_file()
