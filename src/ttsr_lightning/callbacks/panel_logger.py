"""ImagePanelLogger: LR-up | Ref | SR | HR | soft attention panels of the first images of each set, and
panels of what a reference brings (the same image with a reference and with its LR as the reference)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

from ttsr_lightning.data.image_io import save_image
from ttsr_lightning.distributed import gather_lists
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.panel_images import (
    PANEL_CAPTION,
    TILE_TITLES,
    TRANSFER_CAPTION,
    make_panel,
    make_transfer_panel,
)

# The reference levels compared in a texture-transfer panel: the most similar reference against none.
_WITH_REFERENCE, _LR_REFERENCE = "L1", "LR"


class ImagePanelLogger(Callback):
    """Panels of the images at positions ``0 .. max_images - 1`` of every evaluation set.

    The rank that evaluates an image writes its panel as a PNG under
    ``output_dir/<stage>/epoch_<n>/<set>_<image>.png`` (for people without W&B); at the end of the
    evaluation the panels are gathered from every rank and rank 0 sends them, in set order, to W&B
    (``log_image``) or TensorBoard (``add_image``) when those loggers are active.

    Texture transfer at a glance: when a test run has both ``<data>_L1`` and ``<data>_LR`` (the same
    images with the most similar reference and with the LR as their own reference, e.g. CUFED5), the
    first images of the pair get a panel LR-up | SR with the LR as reference | SR with the L1 reference |
    HR | that reference | where the reference changed the SR, written to
    ``output_dir/test/transfer/<data>_<image>.png`` and logged as ``test/<data>/texture_transfer``.
    """

    def __init__(self, output_dir: str, max_images: int = 4) -> None:
        if max_images < 0:
            raise ConfigError(f"callbacks.image_panels.max_images must be >= 0, got {max_images}")
        self.output_dir = Path(output_dir)
        self.max_images = max_images
        # (set index, set, image index, image name, panel) of this rank
        self._panels: list[tuple[int, str, int, str, np.ndarray]] = []
        # test images of the <data>_L1 / <data>_LR sets, for the texture-transfer panels
        self._transfer_images: list[dict[str, Any]] = []

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
            save_image(Image.fromarray(panel), folder / f"{row['set']}_{row['image']}.png")
            self._panels.append((row["set_index"], row["set"], row["index"], row["image"], panel))
            data, _, level = row["set"].rpartition("_")
            if stage == "test" and level in (_WITH_REFERENCE, _LR_REFERENCE):
                self._transfer_images.append(
                    {
                        "data": data,
                        "level": level,
                        "index": row["index"],
                        "image": row["image"],
                        "psnr": row["psnr"],
                        "psnr_bicubic": row["psnr_bicubic"],
                        "ref": row["ref"],
                        "lr_up": batch["lr_up"][i].cpu(),
                        "sr": outputs["sr"][i].cpu(),
                        "hr": batch["hr"][i].cpu(),
                        "reference": ref.cpu() if isinstance(ref, torch.Tensor) else [r.cpu() for r in ref],
                    }
                )

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
        self._transfer_panels(trainer)

    def _transfer_panels(self, trainer: Trainer) -> None:
        """The texture-transfer panels (see the class docstring), made and logged by rank 0."""
        images, self._transfer_images = gather_lists(self._transfer_images), []
        if not trainer.is_global_zero:
            return
        by_key = {(item["data"], item["index"], item["level"]): item for item in images}
        items: dict[str, list[tuple[str, np.ndarray]]] = {}
        for (data, index, level), with_reference in sorted(by_key.items()):
            without = by_key.get((data, index, _LR_REFERENCE))
            if level != _WITH_REFERENCE or without is None:
                continue
            gain = with_reference["psnr"] - without["psnr"]
            panel = make_transfer_panel(
                with_reference["lr_up"],
                without["sr"],
                with_reference["sr"],
                with_reference["hr"],
                with_reference["reference"],
                titles=[
                    f"LR bicubic {with_reference['psnr_bicubic']:.2f} dB",
                    f"SR, LR as ref {without['psnr']:.2f} dB",
                    f"SR, {_WITH_REFERENCE} ref {with_reference['psnr']:.2f} dB ({gain:+.2f})",
                    "HR",
                    f"{_WITH_REFERENCE} reference",
                    "what the reference added",
                ],
                caption=f"{data} {with_reference['image']}: texture transfer from {with_reference['ref']}",
            )
            folder = self.output_dir / "test" / "transfer"
            save_image(Image.fromarray(panel), folder / f"{data}_{with_reference['image']}.png")
            items.setdefault(data, []).append((with_reference["image"], panel))
        for data, panels in items.items():
            self._send(trainer, f"test/{data}/texture_transfer", panels, TRANSFER_CAPTION)

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
            self._send(trainer, f"{stage}/{set_name}/panels", items, PANEL_CAPTION)

    @staticmethod
    def _send(trainer: Trainer, key: str, items: list[tuple[str, np.ndarray]], caption: str) -> None:
        """(image name, panel) items to W&B (one list under ``key``) or TensorBoard (one image each)."""
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                # W&B shows a list of equally sized images: pad every panel to the largest
                height = max(p.shape[0] for _, p in items)
                width = max(p.shape[1] for _, p in items)
                padded = [
                    np.pad(
                        p, ((0, height - p.shape[0]), (0, width - p.shape[1]), (0, 0)), constant_values=255
                    )
                    for _, p in items
                ]
                logger.log_image(
                    key=key,
                    images=padded,
                    caption=[f"{name}: {caption}" for name, _ in items],
                    step=trainer.global_step,
                )
            elif isinstance(logger, TensorBoardLogger):
                for image_name, panel in items:
                    logger.experiment.add_image(
                        f"{key}/{image_name}", panel, trainer.global_step, dataformats="HWC"
                    )
