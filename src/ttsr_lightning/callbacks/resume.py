"""ResumeCheckpoint: what a run killed at any batch needs to continue exactly where it stopped, and the
checkpoint of the batch at which SIGTERM stops it."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ttsr_lightning.errors import ConfigError
from ttsr_lightning.rng import rng_states, set_rng_states


class ResumeCheckpoint(Checkpoint):
    """Owns ``<dirpath>/last.ckpt``: writes it every ``every_n_batches`` training batches and at the end of
    every training epoch, and keeps, in every checkpoint of the run, the training batches done and the
    random generators' states.

    Counts training batches, not Lightning's ``global_step`` (which counts optimiser steps: 1 per batch
    in the warm-up, 1 + gan_k afterwards). With the training loader's position inside the epoch (which
    ``EpochDataLoader.state_dict`` records) and the RNG states restored when training resumes, a run
    killed mid-epoch continues with the batch after its last checkpoint, bit for bit.

    The epoch-end write comes after the LightningModule's ``on_train_epoch_end`` (its learning-rate
    step): Lightning calls a ``Checkpoint``'s epoch-end hook after the module's. It is this callback's
    and not ``ModelCheckpoint(save_last=True)``'s, which writes ``last.ckpt`` only at a step where the
    monitored score entered its top k: a run whose validation PSNR stops improving would end with a
    ``last.ckpt`` of an older epoch, and a resumed run (whose restored top-k state decides differently)
    with another one.

    SIGTERM (a scheduler's time limit or preemption; SIGUSR1 too, SLURM's advance warning with
    ``--signal``, unless Lightning's SLURM auto-requeue owns it) stops training at the end of the
    current batch: Lightning's own handler sets ``trainer.received_sigterm`` and its loops raise
    ``SIGTERMException`` there (under DDP on rank 0's word, which this callback follows too). This
    callback writes ``last.ckpt`` of that batch first, from the same hook and with the same contents as
    the periodic one; a signal during validation writes it when Lightning stops (Lightning resumes by
    running that validation again). A second SIGTERM during the write only sets the flag again.
    """

    def __init__(self, dirpath: str, every_n_batches: int) -> None:
        if every_n_batches < 1:
            raise ConfigError(
                f"callbacks.resume_checkpoint.every_n_batches must be >= 1, got {every_n_batches}"
            )
        self.dirpath = Path(dirpath)
        self.every_n_batches = every_n_batches
        self.batches_seen = 0
        self._restored_rng_states: dict[str, Any] | None = None
        self._saved_at: int | None = None  # batches_seen of the newest checkpoint of this run

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.batches_seen += 1
        if self.batches_seen % self.every_n_batches == 0 or _stopping(trainer):
            trainer.save_checkpoint(self.last_path, weights_only=False)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.last_path, weights_only=False)

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._saved_at = self.batches_seen  # any checkpoint of this state: ours or ModelCheckpoint's

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if (
            isinstance(exception, SIGTERMException)
            and trainer.state.fn == TrainerFn.FITTING
            and self._saved_at != self.batches_seen
        ):
            trainer.save_checkpoint(self.last_path, weights_only=False)

    def state_dict(self) -> dict[str, Any]:
        return {"batches_seen": self.batches_seen, "rng_states": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches_seen = int(state_dict["batches_seen"])
        self._restored_rng_states = state_dict["rng_states"]

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning has registered its signal handlers by now; SIGUSR1 has one only under SLURM with
        # auto-requeue (which then checkpoints and requeues the job, and SLURM's SIGTERM follows).
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None) and _main_thread():
            signal.signal(signal.SIGUSR1, _as_sigterm)  # restored by Lightning's teardown
        # Restored here, after everything Lightning does between loading the checkpoint and the first
        # batch, so that the first resumed batch draws what it drew in the uninterrupted run.
        if self._restored_rng_states is not None:
            set_rng_states(self._restored_rng_states)
            self._restored_rng_states = None


def _stopping(trainer: Trainer) -> bool:
    """Whether Lightning stops training after this batch for a SIGTERM (on every rank: rank 0 decides)."""
    if trainer.world_size == 1:
        return trainer.received_sigterm
    return trainer.strategy.reduce_boolean_decision(
        trainer.is_global_zero and trainer.received_sigterm, all=False
    )


def _as_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.raise_signal(signal.SIGTERM)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
