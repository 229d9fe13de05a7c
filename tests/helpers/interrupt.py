"""A callback that stops a run the hard way, as a killed job would (for resume tests)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint


class SimulatedKill(RuntimeError):
    pass


class KillAfterBatch(Checkpoint):
    """Raises after training batch ``batch`` (1-based count over the whole run) has been checkpointed: a
    ``Checkpoint`` added after ``ResumeCheckpoint``, so Lightning calls it after that batch's write."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.fit_loop.epoch_loop.total_batch_idx + 1 == self.batch:
            raise SimulatedKill(f"simulated kill after batch {self.batch}")
