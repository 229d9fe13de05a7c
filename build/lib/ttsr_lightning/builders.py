"""Lightning parts from Hydra config groups (callbacks, loggers), and closing the loggers."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from lightning.pytorch import Trainer
from omegaconf import DictConfig


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, loggers) that has a ``_target_``."""
    if not group:
        return []
    return [
        instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node
    ]


def finish_loggers(trainer: Trainer, exit_code: int = 0, preempted: bool = False) -> None:
    """Finalise every logger and close the W&B run with the process's exit status (also after an error):
    W&B shows a run that ended with a non-zero status as failed, and a ``preempted`` one as preempted."""
    for logger in trainer.loggers:
        logger.finalize("success" if exit_code == 0 else "failed")
    try:
        import wandb
    except ImportError:  # pragma: no cover
        return
    if wandb.run is not None:
        if preempted:
            wandb.run.mark_preempting()
        wandb.finish(exit_code=exit_code)
