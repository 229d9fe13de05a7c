"""A callback that stops a run the hard way, as a killed job would (for resume tests)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class SimulatedKill(RuntimeError):
    pass


class KillAfterBatch(Callback):
    """Raises after training batch ``batch`` (1-based count over the whole run) has been checkpointed."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.fit_loop.epoch_loop.total_batch_idx + 1 == self.batch:
            raise SimulatedKill(f"simulated kill after batch {self.batch}")
