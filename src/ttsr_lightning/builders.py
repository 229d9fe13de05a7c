"""Objects from ``_target_`` configs, each refusal naming its config key; Lightning parts from Hydra
config groups (callbacks, loggers), and closing the loggers."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch import Trainer
from omegaconf import DictConfig

from ttsr_lightning.cli import one_line
from ttsr_lightning.errors import ConfigError


def instantiate_node(key: str, node: Any, **kwargs: Any) -> Any:
    """``instantiate(node, **kwargs)`` for the config at ``key``; a target that cannot be imported or a
    constructor's refusal (Lightning's MisconfigurationException included) becomes a ConfigError
    ``<key>: <the cause, on one line>`` (the cause alone where it names a key below ``key`` itself)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = one_line(exc)
        raise ConfigError(cause if cause.startswith(f"{key}.") else f"{key}: {cause}") from exc


def instantiate_group(key: str, group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of the dict-of-configs group at ``key`` (callbacks, loggers) that has a
    ``_target_``; a refusal names the entry's key (``callbacks.<name>``)."""
    if not group:
        return []
    return [
        instantiate_node(f"{key}.{name!s}", node)
        for name, node in group.items()
        if isinstance(node, DictConfig) and "_target_" in node
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
