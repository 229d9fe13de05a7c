"""EvaluationResults: every rank's per-image test results, gathered and written once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from PIL import Image

from ttsr_lightning.data.image_io import save_image
from ttsr_lightning.distributed import gather_lists
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.panel_images import to_uint8_image
from ttsr_lightning.result_files import IMAGE_COLUMNS, measures_of, per_set_results, sort_rows, write_results

THUMBNAIL_COLUMNS = ("lr_up", "sr", "hr")
Thumbnails = tuple[np.ndarray, np.ndarray, np.ndarray]


class EvaluationResults(Callback):
    """The results of a test run, image by image, from every rank (see :mod:`ttsr_lightning.result_files`).

    After every test batch, the rows the evaluation step returned are kept; at the end of the test
    epoch they are gathered from every rank and written once (rank 0) into ``output_dir``:
    ``test_per_image.csv``, ``test_per_set.csv``, ``results.md``, ``results.json`` (with
    :attr:`provenance`), every image of every set exactly once, in set order then dataset order.

    - ``save_images``: every rank writes its SR images to ``<output_dir>/images/<set>/<image>.png``,
      rounded as the official code (``round((sr + 1) * 127.5)``).
    - with a W&B logger: a table ``table_key`` with a row per image (set, image, ref, reference,
      measures, LR-up / SR / HR thumbnails of at most ``thumbnail_size`` px a side).

    ``provenance`` (how the numbers were obtained: weights, protocol, commit, ...) is set by the entry
    point before testing; ``set_results`` holds the per-set means after the test epoch (every rank).
    """

    def __init__(
        self,
        output_dir: str,
        save_images: bool = False,
        thumbnail_size: int = 256,
        table_key: str = "test/images",
    ) -> None:
        if thumbnail_size < 1:
            raise ConfigError(f"thumbnail_size must be >= 1 px, got {thumbnail_size}")
        self.output_dir = Path(output_dir)
        self.save_images = save_images
        self.thumbnail_size = thumbnail_size
        self.table_key = table_key
        self.provenance: dict[str, Any] = {}
        self.set_results: list[dict[str, Any]] = []
        # (row, LR-up / SR / HR thumbnails or None) of this rank's images
        self._results: list[tuple[dict[str, Any], Thumbnails | None]] = []

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._results, self.set_results = [], []

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        with_table = _uses_wandb(trainer)
        batch_size = outputs["sr"].shape[0]
        for number, row in enumerate(outputs["rows"]):
            thumbnails = None
            if row["protocol_index"] == 0:  # images once per image (rows come protocol by protocol)
                i = number % batch_size
                sr = to_uint8_image(outputs["sr"][i])
                if self.save_images:
                    save_image(
                        Image.fromarray(sr), self.output_dir / "images" / row["set"] / f"{row['image']}.png"
                    )
                if with_table:
                    lr_up, hr = to_uint8_image(batch["lr_up"][i]), to_uint8_image(batch["hr"][i])
                    thumbnails = (self._thumbnail(lr_up), self._thumbnail(sr), self._thumbnail(hr))
            self._results.append((row, thumbnails))

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # every rank takes part in the gathering (a collective); rank 0 writes
        results, self._results = gather_lists(self._results), []
        if not results:
            return
        ordered = sort_rows([row for row, _ in results])
        self.set_results = per_set_results(ordered)
        if trainer.is_global_zero:
            write_results(ordered, self.set_results, self.output_dir, self.provenance)
            if _uses_wandb(trainer):
                thumbnails = {(row["set_index"], row["index"]): thumbs for row, thumbs in results if thumbs}
                self._log_table(trainer, ordered, thumbnails)

    def _log_table(
        self,
        trainer: Trainer,
        rows: list[dict[str, Any]],
        thumbnails: dict[tuple[int, int], Thumbnails],
    ) -> None:
        import wandb

        columns = (*IMAGE_COLUMNS, *measures_of(rows))
        data = []
        for row in rows:
            images = thumbnails.get((row["set_index"], row["index"])) or ()
            data.append([*(row[column] for column in columns), *map(wandb.Image, images)])
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key=self.table_key, columns=[*columns, *THUMBNAIL_COLUMNS], data=data)

    def _thumbnail(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 shrunk (bicubic, aspect kept) so that its longer side is at most thumbnail_size."""
        height, width = image.shape[:2]
        scale = self.thumbnail_size / max(height, width)
        if scale >= 1:
            return image
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


def _uses_wandb(trainer: Trainer) -> bool:
    return any(isinstance(logger, WandbLogger) for logger in trainer.loggers)
