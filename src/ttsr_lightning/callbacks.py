"""Lightning callbacks of the suite: mid-epoch checkpoints, image panels, per-image test outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

from ttsr_lightning.panels import PANEL_CAPTION, make_panel, to_uint8_image


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
                    # W&B shows a list of equally sized images: pad every panel to the largest
                    height = max(p.shape[0] for _, p in items)
                    width = max(p.shape[1] for _, p in items)
                    padded = [
                        np.pad(
                            p,
                            ((0, height - p.shape[0]), (0, width - p.shape[1]), (0, 0)),
                            constant_values=255,
                        )
                        for _, p in items
                    ]
                    logger.log_image(
                        key=f"{stage}/{set_name}/panels",
                        images=padded,
                        caption=[f"{n}: {PANEL_CAPTION}" for n, _ in items],
                        step=trainer.global_step,
                    )
                elif isinstance(logger, TensorBoardLogger):
                    for image_name, panel in items:
                        logger.experiment.add_image(
                            f"{stage}/{set_name}/{image_name}", panel, trainer.global_step, dataformats="HWC"
                        )


class TestImageRecorder(Callback):
    """What a test run produced, image by image: SR files and a W&B table with thumbnails.

    After every test batch, for each image (its set and stem from the batch, its PSNR/SSIM from the
    rows ``TTSRSystem.test_step`` has just appended to ``pl_module.test_rows``):

    - with ``image_dir``: the SR is saved as ``<image_dir>/<set>/<image>.png``, rounded as the
      official code (``round((sr + 1) * 127.5)``);
    - with a W&B logger active: a row (set, image, ref, psnr, ssim, bicubic psnr, bicubic ssim,
      LR-up / SR / HR thumbnails of at most ``thumbnail_size`` px a side) is kept, and the table is
      logged as ``table_key`` at the end of the test epoch.
    """

    TABLE_COLUMNS = (
        "set",
        "image",
        "ref",
        "psnr",
        "ssim",
        "psnr_bicubic",
        "ssim_bicubic",
        "lr_up",
        "sr",
        "hr",
    )

    def __init__(
        self, image_dir: str | None = None, thumbnail_size: int = 256, table_key: str = "test/images"
    ) -> None:
        if thumbnail_size < 1:
            raise ValueError(f"thumbnail_size must be >= 1 px, got {thumbnail_size}")
        self.image_dir = None if image_dir is None else Path(image_dir)
        self.thumbnail_size = thumbnail_size
        self.table_key = table_key
        self._table_rows: list[list[Any]] = []

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._table_rows = []

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(outputs, dict) or not trainer.is_global_zero:
            return
        wandb_loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        test_rows = getattr(pl_module, "test_rows", None)
        if not isinstance(test_rows, list):
            raise TypeError(
                f"TestImageRecorder needs a module that keeps per-image test_rows (TTSRSystem), "
                f"got {type(pl_module).__name__}"
            )
        for index, row in enumerate(test_rows[-outputs["sr"].shape[0] :]):
            sr = to_uint8_image(outputs["sr"][index])
            if self.image_dir is not None:
                folder = self.image_dir / outputs["set_name"]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(sr).save(folder / f"{row['image']}.png")
            if wandb_loggers:
                import wandb

                thumbnails = [
                    wandb.Image(self._thumbnail(image))
                    for image in (
                        to_uint8_image(batch["lr_up"][index]),
                        sr,
                        to_uint8_image(batch["hr"][index]),
                    )
                ]
                metrics = [row[key] for key in ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic")]
                self._table_rows.append(
                    [outputs["set_name"], row["image"], row["ref"], *metrics, *thumbnails]
                )

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rows, self._table_rows = self._table_rows, []
        if not rows:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key=self.table_key, columns=list(self.TABLE_COLUMNS), data=rows)

    def _thumbnail(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 shrunk (bicubic, aspect kept) so that its longer side is at most thumbnail_size."""
        height, width = image.shape[:2]
        scale = self.thumbnail_size / max(height, width)
        if scale >= 1:
            return image
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
