"""A training run's checkpoint, written by one training batch of a tiny TTSRSystem (reconstruction loss),
and the one-batch fit it comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from ttsr_lightning.system import TTSRSystem


def one_batch_run_checkpoint(path: Path, generator: dict[str, Any]) -> Path:
    """``path``: the Lightning checkpoint of a TTSRSystem with ``generator`` (TTSRGenerator arguments)
    after one training batch of random images (LR 10x10, HR / Ref 40x40)."""
    torch.manual_seed(0)
    system = TTSRSystem(
        generator={"_target_": "ttsr_lightning.models.TTSRGenerator", **generator},
        discriminator=None,
        losses={
            "terms": {
                "reconstruction": {"_target_": "ttsr_lightning.losses.ReconstructionLoss", "weight": 1.0}
            }
        },
        optim={"warmup_epochs": 0},
    )
    batch = {"lr": torch.rand(3, 10, 10) * 2 - 1, "hr": torch.rand(3, 40, 40) * 2 - 1}
    batch.update(lr_up=batch["hr"], ref=batch["hr"], ref_down_up=batch["hr"])
    fit_one_batch(system, batch).save_checkpoint(path)
    return path


def fit_one_batch(system: TTSRSystem, batch: dict[str, torch.Tensor], root: Path | None = None) -> Trainer:
    """The trainer after fitting ``system`` on the one ``batch`` (CPU, no logger, no checkpoints)."""
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(system, train_dataloaders=DataLoader([batch], batch_size=1))
    return trainer
