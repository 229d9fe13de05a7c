"""ResumeCheckpoint: what a run killed at any batch needs to continue exactly where it stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from ttsr_lightning.errors import ConfigError
from ttsr_lightning.rng import rng_states, set_rng_states


class ResumeCheckpoint(Callback):
    """Writes ``<dirpath>/last.ckpt`` every ``every_n_batches`` training batches and keeps, in every
    checkpoint of the run, the training batches done and the random generators' states.

    Counts training batches, not Lightning's ``global_step`` (which counts optimiser steps: 1 per batch
    in the warm-up, 1 + gan_k afterwards). With the DataModule's position inside the epoch (which
    ``TrainDataModule.state_dict`` records) and the RNG states restored when training resumes, a run
    killed mid-epoch continues with the batch after its last checkpoint, bit for bit. Pair it with
    ``ModelCheckpoint(save_last=True, enable_version_counter=False)``: both keep one ``last.ckpt``, always
    the newest state.
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

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.batches_seen += 1
        if self.batches_seen % self.every_n_batches == 0:
            trainer.save_checkpoint(self.dirpath / "last.ckpt", weights_only=False)

    def state_dict(self) -> dict[str, Any]:
        return {"batches_seen": self.batches_seen, "rng_states": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches_seen = int(state_dict["batches_seen"])
        self._restored_rng_states = state_dict["rng_states"]

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Restored here, after everything Lightning does between loading the checkpoint and the first
        # batch, so that the first resumed batch draws what it drew in the uninterrupted run.
        if self._restored_rng_states is not None:
            set_rng_states(self._restored_rng_states)
            self._restored_rng_states = None
