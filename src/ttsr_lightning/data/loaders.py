"""DataLoader construction shared by the DataModules."""

from __future__ import annotations

from torch.utils.data import DataLoader

from ttsr_lightning.data.eval_dataset import EvalDataset


def evaluation_loader(
    dataset: EvalDataset, num_workers: int, pin_memory: bool, persistent_workers: bool
) -> DataLoader:
    """Whole images in dataset order, batch size 1 (images differ in size); no randomness involved."""
    return DataLoader(
        dataset,
        batch_size=1,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
    )


def check_loader_arguments(key: str, batch_size: int, num_workers: int) -> None:
    """ValueError naming config ``key`` for a batch size < 1 or a negative worker count."""
    if batch_size < 1:
        raise ValueError(f"{key}.batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"{key}.num_workers must be >= 0, got {num_workers}")
