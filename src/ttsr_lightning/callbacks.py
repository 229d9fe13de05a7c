"""Lightning callbacks of the suite: mid-epoch checkpoints and image panels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

from ttsr_lightning.panels import PANEL_CAPTION, make_panel


class BatchIntervalCheckpoint(Callback):
    """Write ``<dirpath>/last.ckpt`` every ``every_n_batches`` training batches.

    Counts training batches (``TTSRSystem.batches_seen``), not Lightning's ``global_step``, which counts
    optimiser steps (1 per batch in the warm-up, 1 + gan_k afterwards). The checkpoint holds the loop
    progress and the training sampler's position, so a run killed mid-epoch resumes at the next batch.
    Pair it with ``ModelCheckpoint(save_last=True, enable_version_counter=False)``: both keep one
    ``last.ckpt``, always the newest state.
    """

    def __init__(self, dirpath: str, every_n_batches: int) -> None:
        if every_n_batches < 1:
            raise ValueError(
                f"callbacks.batch_checkpoint.every_n_batches must be >= 1, got {every_n_batches}"
            )
        self.dirpath = Path(dirpath)
        self.every_n_batches = every_n_batches

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if int(getattr(pl_module, "batches_seen", batch_idx + 1)) % self.every_n_batches == 0:
            trainer.save_checkpoint(self.dirpath / "last.ckpt")


class ImagePanelLogger(Callback):
    """Panels LR-up | Ref | SR | HR | soft attention for the first images of each evaluation set.

    Saved as PNG under ``output_dir/<stage>/epoch_<n>/`` (for people without W&B) and sent to W&B
    (``log_image``) or TensorBoard (``add_image``) when those loggers are active.
    """

    def __init__(self, output_dir: str, max_images: int | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.max_images = max_images
        self._panels: dict[str, list[tuple[str, np.ndarray]]] = {}

    def _collect(self, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        limit = self.max_images if self.max_images is not None else getattr(pl_module, "num_image_panels", 4)
        if not isinstance(outputs, dict) or batch_idx >= limit:
            return
        soft = outputs.get("soft_attention")
        names = batch.get("name") or [f"image{batch_idx}"]
        panel = make_panel(
            batch["lr_up"][0],
            batch["ref"][0],
            outputs["sr"][0],
            batch["hr"][0],
            None if soft is None else soft[0],
        )
        self._panels.setdefault(outputs["set_name"], []).append((str(names[0]), panel))

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self._collect(pl_module, outputs, batch, batch_idx)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._collect(pl_module, outputs, batch, batch_idx)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer, "test")

    def _flush(self, trainer: Trainer, stage: str) -> None:
        panels, self._panels = self._panels, {}
        if not panels or not trainer.is_global_zero:
            return
        folder = self.output_dir / stage / f"epoch_{trainer.current_epoch:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for set_name, items in panels.items():
            for image_name, panel in items:
                Image.fromarray(panel).save(folder / f"{set_name}_{image_name}.png")
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(
                        key=f"{stage}/{set_name}/panels",
                        images=[p for _, p in items],
                        caption=[f"{n}: {PANEL_CAPTION}" for n, _ in items],
                        step=trainer.global_step,
                    )
                elif isinstance(logger, TensorBoardLogger):
                    for image_name, panel in items:
                        logger.experiment.add_image(
                            f"{stage}/{set_name}/{image_name}", panel, trainer.global_step, dataformats="HWC"
                        )
