"""ImagePanelLogger: LR-up | Ref | SR | HR | soft attention panels of the first images of each set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

from ttsr_lightning.distributed import gather_lists
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.panels import PANEL_CAPTION, TILE_TITLES, make_panel


class ImagePanelLogger(Callback):
    """Panels of the images at positions ``0 .. max_images - 1`` of every evaluation set.

    The rank that evaluates an image writes its panel as a PNG under
    ``output_dir/<stage>/epoch_<n>/<set>_<image>.png`` (for people without W&B); at the end of the
    evaluation the panels are gathered from every rank and rank 0 sends them, in set order, to W&B
    (``log_image``) or TensorBoard (``add_image``) when those loggers are active.
    """

    def __init__(self, output_dir: str, max_images: int = 4) -> None:
        if max_images < 0:
            raise ConfigError(f"callbacks.image_panels.max_images must be >= 0, got {max_images}")
        self.output_dir = Path(output_dir)
        self.max_images = max_images
        # (set index, set, image index, image name, panel) of this rank
        self._panels: list[tuple[int, str, int, str, np.ndarray]] = []

    def _collect(self, trainer: Trainer, stage: str, outputs: Any, batch: Any) -> None:
        # the primary protocol's rows, one per image of the batch in batch order: its PSNR in the titles
        primary_rows = [row for row in outputs["rows"] if row["protocol_index"] == 0]
        for i, row in enumerate(primary_rows):
            if row["index"] >= self.max_images:
                continue
            soft = outputs["soft_attention"]
            refs = batch["ref"]
            ref = refs[i] if isinstance(refs, torch.Tensor) else [image[i] for image in refs]
            titles = list(TILE_TITLES)
            titles[0] = f"LR bicubic {row['psnr_bicubic']:.2f} dB"
            titles[2] = f"SR {row['psnr']:.2f} dB"
            if not isinstance(refs, torch.Tensor):
                titles[1] = f"{len(refs)} references"
            caption = (
                f"{row['set']} {row['image']}  reference: {row['reference']} ({row['ref']})  "
                f"protocol: {row['protocol']}"
            )
            panel = make_panel(
                batch["lr_up"][i],
                ref,
                outputs["sr"][i],
                batch["hr"][i],
                None if soft is None else soft[i],
                titles=titles,
                caption=caption,
            )
            folder = self.output_dir / stage / f"epoch_{trainer.current_epoch:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(panel).save(folder / f"{row['set']}_{row['image']}.png")
            self._panels.append((row["set_index"], row["set"], row["index"], row["image"], panel))

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
            self._collect(trainer, "val", outputs, batch)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._collect(trainer, "test", outputs, batch)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log(trainer, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log(trainer, "test")

    def _log(self, trainer: Trainer, stage: str) -> None:
        logs_images = any(isinstance(logger, WandbLogger | TensorBoardLogger) for logger in trainer.loggers)
        panels, self._panels = self._panels, []
        if not logs_images:
            return
        panels = sorted(gather_lists(panels), key=lambda item: (item[0], item[2]))
        if not trainer.is_global_zero:
            return
        by_set: dict[str, list[tuple[str, np.ndarray]]] = {}
        for _, set_name, _, image_name, panel in panels:
            by_set.setdefault(set_name, []).append((image_name, panel))
        for set_name, items in by_set.items():
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
                        caption=[f"{name}: {PANEL_CAPTION}" for name, _ in items],
                        step=trainer.global_step,
                    )
                elif isinstance(logger, TensorBoardLogger):
                    for image_name, panel in items:
                        logger.experiment.add_image(
                            f"{stage}/{set_name}/{image_name}", panel, trainer.global_step, dataformats="HWC"
                        )
