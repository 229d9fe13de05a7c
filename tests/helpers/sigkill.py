"""Run the CLI (``python -m ttsr_lightning``) in its own process group and SIGKILL it at a chosen point.

A real kill, not an exception: the whole process group (the rank-0 process, the DDP ranks Lightning
starts, every data-loader worker) receives SIGKILL, so no ``finally``, teardown or checkpoint hook runs.

Race-free by construction: ``PauseAt``, added to the run as a Hydra callback override, freezes every
rank at the chosen point: after training batch ``batch`` (1-based count over the run), or at the end
of epoch ``epoch``'s validation. It is a ``Checkpoint`` added after the project's own, so Lightning
calls it after ``ResumeCheckpoint`` and the ``last.ckpt`` of a batch is on disk (written atomically by
rank 0; under DDP ``save_checkpoint`` ends in a barrier, so rank 0 has finished writing when any rank
gets there). Each rank then writes ``<marker_dir>/paused.rank<R>`` and sleeps; the parent kills the
group once every rank's marker exists. The kill therefore hits the same state on any machine, while
loader workers keep prefetching as they would in a real job.

Usage::

    result = run_and_kill(overrides, marker_dir, cwd=repo_root, env=env, kill_after_batch=6)
    assert result.returncode == -signal.SIGKILL
    run_cli([*overrides, f"ckpt_path={run_dir}/checkpoints/last.ckpt"], cwd=repo_root, env=env)

The subprocess must be able to import ``helpers.sigkill`` (put ``tests/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint

from helpers.documented import documented_commands, training_overrides


class PauseAt(Checkpoint):
    """Freeze the run: write ``<marker_dir>/paused.rank<R>``, then sleep until killed.

    Give exactly one of ``batch`` (after training batch ``batch``, 1-based over the run, in
    ``on_train_batch_end``, once that batch's ``ResumeCheckpoint`` is written: Lightning calls the
    ``Checkpoint`` callbacks last, in the order given) and ``epoch`` (in ``on_validation_end`` of that
    0-based epoch's validation: before the epoch-end hooks, so before the LightningModule's learning-rate
    step and the epoch's checkpoints; the run must validate in that epoch).
    """

    def __init__(self, marker_dir: str, batch: int | None = None, epoch: int | None = None) -> None:
        if (batch is None) == (epoch is None):
            raise ValueError("PauseAt: give exactly one of batch, epoch")
        self.marker_dir = Path(marker_dir)
        self.batch = batch
        self.epoch = epoch

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.batch is not None and trainer.fit_loop.epoch_loop.total_batch_idx + 1 == self.batch:
            self._pause(trainer, f"batch_idx={batch_idx}")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.epoch is not None and trainer.current_epoch == self.epoch and not trainer.sanity_checking:
            self._pause(trainer, "validation_end")

    def _pause(self, trainer: Trainer, where: str) -> None:
        write_marker(self.marker_dir, trainer, where)
        while True:  # until SIGKILL
            time.sleep(3600)


class WaitForSigterm(Callback):
    """Before training batch ``batch`` (1-based over the run): write ``<marker_dir>/paused.rank<R>``,
    wait until Lightning has received SIGTERM (the parent sends it), then let the batch run."""

    def __init__(self, marker_dir: str, batch: int) -> None:
        self.marker_dir = Path(marker_dir)
        self.batch = batch

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.fit_loop.epoch_loop.total_batch_idx + 1 == self.batch:
            write_marker(self.marker_dir, trainer, f"before batch_idx={batch_idx}")
            while not trainer.received_sigterm:
                time.sleep(0.01)


def write_marker(marker_dir: Path, trainer: Trainer, where: str) -> None:
    marker_dir.mkdir(parents=True, exist_ok=True)
    marker = marker_dir / f"paused.rank{trainer.global_rank}"
    temporary = marker.with_name(f"{marker.name}.tmp")  # one per rank: ranks pause at once
    temporary.write_text(f"{os.getpid()} epoch={trainer.current_epoch} {where}\n")
    temporary.rename(marker)  # the parent never sees a half-written marker


class RankDigest(Callback):
    """At the end of training, every rank writes ``<folder>/rank<R>.pt``: its model's state dict (on the
    CPU), so that a test can check that the ranks of a DDP run hold equal weights."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {name: value.detach().cpu() for name, value in pl_module.state_dict().items()}
        torch.save(state, self.folder / f"rank{trainer.global_rank}.pt")


@dataclass
class KillResult:
    returncode: int | None
    markers: dict[int, str]  # rank -> "pid epoch=E where"
    output: str
    seconds: float


def cli_command(overrides: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "ttsr_lightning", *overrides]


def run_cli(
    overrides: Sequence[str],
    cwd: str | Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to its end in its own process group (killed as a whole on timeout); raise on failure."""
    process = subprocess.Popen(
        cli_command(overrides),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        output, _ = process.communicate()
        raise RuntimeError(f"CLI timed out after {timeout} s:\n{output[-4000:]}") from None
    finally:
        _kill_group(process)  # no stray DDP rank or worker outlives the run
    if process.returncode != 0:
        raise RuntimeError(f"CLI failed (rc {process.returncode}):\n{output[-4000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, output, None)


def run_and_kill(
    overrides: Sequence[str],
    marker_dir: str | Path,
    cwd: str | Path,
    env: Mapping[str, str] | None = None,
    world_size: int = 1,
    timeout: float = 600,
    *,
    kill_after_batch: int | None = None,
    kill_at_epoch_end: int | None = None,
    sigterm_before_batch: int | None = None,
) -> KillResult:
    """Run the CLI, freeze every rank at the chosen point (see ``PauseAt``), then SIGKILL the group; or
    send the group SIGTERM (as a scheduler does) before a batch (see ``WaitForSigterm``) and wait for
    the run to stop.

    Give one of ``kill_after_batch`` (1-based batch of the run), ``kill_at_epoch_end`` (0-based epoch)
    and ``sigterm_before_batch`` (1-based). The pause callback is added as
    ``+callbacks.sigkill_pause``. Raises if the run ends (or fails) before that point. ``returncode``
    is ``-signal.SIGKILL`` after a kill, the run's own exit status after SIGTERM.
    """
    points = {"batch": kill_after_batch, "epoch": kill_at_epoch_end, "sigterm": sigterm_before_batch}
    given = {name: value for name, value in points.items() if value is not None}
    if len(given) != 1:
        raise ValueError("give exactly one of kill_after_batch, kill_at_epoch_end, sigterm_before_batch")
    [(kind, value)] = given.items()
    marker_dir = Path(marker_dir)
    marker_dir.mkdir(parents=True, exist_ok=True)
    for stale in marker_dir.glob("paused.rank*"):
        stale.unlink()
    point = f"batch:{value}" if kind == "sigterm" else f"{kind}:{value}"
    pauser = "WaitForSigterm" if kind == "sigterm" else "PauseAt"
    pause = f"+callbacks.sigkill_pause={{_target_:{__name__}.{pauser},{point},marker_dir:'{marker_dir}'}}"
    expected = [marker_dir / f"paused.rank{rank}" for rank in range(world_size)]
    log_path = marker_dir / "output.log"
    start = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            cli_command([*overrides, pause]),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: ranks and workers die with it
        )
        try:
            while not all(path.exists() for path in expected):
                if process.poll() is not None:
                    raise RuntimeError(
                        f"run ended (rc {process.returncode}) before the pause point ({point}):\n"
                        + log_path.read_text()[-4000:]
                    )
                if time.monotonic() - start > timeout:
                    raise RuntimeError(f"pause point ({point}) not reached within {timeout} s")
                time.sleep(0.05)
            os.killpg(process.pid, signal.SIGTERM if kind == "sigterm" else signal.SIGKILL)
            process.wait(timeout=timeout)
        finally:
            _kill_group(process)
    markers = {rank: path.read_text().strip() for rank, path in enumerate(expected)}
    return KillResult(process.returncode, markers, log_path.read_text(), time.monotonic() - start)


def _kill_group(process: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


REPO_ROOT = Path(__file__).resolve().parents[2]
# the tiny model and run of the SIGKILL tests (the CLI's own overrides)
# conf/debug/tiny.yaml with three epochs of four batches, a checkpoint after every batch, no test
TINY_CLI = [
    "debug=tiny",
    "trainer.limit_train_batches=4",
    "trainer.max_epochs=3",
    "test=false",
    "callbacks.resume_checkpoint.every_n_batches=1",
]
# a learning-rate decay after the first epoch (the schedule's state must resume too)
MULTISTEP_AT_EPOCH_1 = (
    "optim.generator.scheduler={_target_:torch.optim.lr_scheduler.MultiStepLR,_partial_:true,"
    "milestones:[1],gamma:0.5}"
)
# another optimiser and schedule, by overrides alone: the README's command, as printed
[ADAMW_COSINE_COMMAND] = documented_commands("README.md", "Optimisers and schedules")
ADAMW_COSINE = training_overrides(ADAMW_COSINE_COMMAND)


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: the package and ``tests/`` importable, W&B off."""
    paths = [str(REPO_ROOT / "src"), str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "WANDB_MODE": "disabled"}


def assert_same_training_state(expected: dict, actual: dict) -> None:
    """Two training checkpoints hold the same progress, weights, optimiser and LR-schedule state."""
    progress = "ResumeCheckpoint"
    assert actual["callbacks"][progress]["batches_seen"] == expected["callbacks"][progress]["batches_seen"]
    different = [k for k, v in expected["state_dict"].items() if not torch.equal(v, actual["state_dict"][k])]
    assert not different, f"{len(different)} of {len(expected['state_dict'])} state tensors differ"
    for ours, theirs in zip(actual["optimizer_states"], expected["optimizer_states"], strict=True):
        for param_id, state in theirs["state"].items():
            for name, tensor in state.items():
                assert torch.equal(tensor, ours["state"][param_id][name]), (param_id, name)
    epochs = [[s["last_epoch"] for s in ckpt["lr_schedulers"]] for ckpt in (actual, expected)]
    assert epochs[0] == epochs[1], f"scheduler epochs {epochs[0]} after the resume, {epochs[1]} uninterrupted"


def whole_and_resumed(
    overrides: Sequence[str],
    folder: Path,
    world_size: int = 1,
    resume_overrides: Sequence[str] = (),
    **kill: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CLI with ``overrides`` run uninterrupted (``<folder>/whole``), then again (``<folder>/killed``)
    SIGKILLed as ``kill`` says (``run_and_kill``'s ``kill_after_batch`` / ``kill_at_epoch_end``), every
    one of its ``world_size`` ranks frozen first, and resumed from its ``last.ckpt`` (with
    ``resume_overrides`` too). Returns both runs' final ``last.ckpt``, loaded on the CPU."""
    env = cli_env()
    run_cli([*overrides, f"hydra.run.dir={folder / 'whole'}"], REPO_ROOT, env)
    killed_dir = folder / "killed"
    result = run_and_kill(
        [*overrides, f"hydra.run.dir={killed_dir}"], folder / "markers", REPO_ROOT, env, world_size, **kill
    )
    assert result.returncode == -signal.SIGKILL
    assert len(result.markers) == world_size  # every rank was frozen, then killed with its workers
    checkpoint = killed_dir / "checkpoints" / "last.ckpt"
    run_cli(
        [*overrides, f"hydra.run.dir={killed_dir}", f"ckpt_path={checkpoint}", *resume_overrides],
        REPO_ROOT,
        env,
    )
    whole = torch.load(folder / "whole" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return whole, torch.load(checkpoint, map_location="cpu", weights_only=True)
