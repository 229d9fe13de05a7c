"""train(cfg): build data, system, loggers and callbacks from a composed config, fit, then test."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from ttsr_lightning.config_paths import REPO_ROOT
from ttsr_lightning.system import TTSRSystem

log = logging.getLogger(__name__)

# TrainDataModule restores its sampler's position inside the epoch itself (state_dict / EpochSampler.skip);
# Lightning's warning only knows about stateful DataLoaders.
warnings.filterwarnings(
    "ignore", message="You're resuming from a checkpoint that ended before the epoch ended"
)


def build_system(cfg: DictConfig) -> TTSRSystem:
    """The LightningModule from the model, loss, optim and system groups (plain values only)."""

    def plain(node: Any) -> Any:
        return None if node is None else OmegaConf.to_container(node, resolve=True)

    return TTSRSystem(
        generator=plain(cfg.model.generator),
        discriminator=plain(cfg.model.get("discriminator")),
        losses=plain(cfg.loss),
        optim=plain(cfg.optim),
        **plain(cfg.system),
    )


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, loggers) that has a ``_target_``."""
    if not group:
        return []
    return [
        instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node
    ]


def git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True
        )
        return result.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def parameter_counts(system: TTSRSystem) -> dict[str, int]:
    """Parameters of the generator, its parts and the critic (trainable only for the LTE)."""

    def count(module: torch.nn.Module | None, trainable_only: bool = False) -> int:
        if module is None:
            return 0
        return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

    generator = system.generator
    return {
        "params/generator": count(generator),
        "params/main_net": count(generator.main_net),
        "params/lte_trainable": count(generator.lte, trainable_only=True),
        "params/discriminator": count(system.discriminator),
    }


def validate_run_config(cfg: DictConfig) -> None:
    """Fail at start-up, naming the key, for values that would only fail (or mislead) later."""
    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(
            f"ckpt_path: no checkpoint at {cfg.ckpt_path} (give the path to a .ckpt file)"
        )
    if cfg.init_weights is not None and not Path(cfg.init_weights).is_file():
        raise FileNotFoundError(f"init_weights: no weights file at {cfg.init_weights}")
    if cfg.ckpt_path is not None and cfg.init_weights is not None:
        raise ValueError("ckpt_path and init_weights are exclusive: a resumed run already has its weights")
    max_epochs = cfg.trainer.get("max_epochs")
    if max_epochs is not None and max_epochs < cfg.optim.warmup_epochs:
        raise ValueError(
            f"trainer.max_epochs ({max_epochs}) is shorter than optim.warmup_epochs "
            f"({cfg.optim.warmup_epochs}): the adversarial/perceptual phase would never start"
        )


def write_test_results(rows: list[dict[str, Any]], metrics: dict[str, float], output_dir: Path) -> None:
    """Per-image rows to ``test_per_image.csv``; the means per set to ``test_summary.json``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    if rows:
        with open(output_dir / "test_per_image.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    (output_dir / "test_summary.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (unless ``train=false``) and test (unless ``test=false``); returns the final metrics."""
    validate_run_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    datamodule = instantiate(cfg.data.train)
    system = build_system(cfg)
    if cfg.init_weights is not None:
        from ttsr_lightning.official import load_generator_weights

        load_generator_weights(system.generator, cfg.init_weights)
        log.info("generator initialised from %s", cfg.init_weights)

    callbacks: list[Callback] = instantiate_group(cfg.get("callbacks"))
    loggers: list[Logger] = instantiate_group(cfg.get("logger"))
    trainer: Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    run_info = {"config": OmegaConf.to_container(cfg, resolve=True), "git_commit": git_commit()}
    run_info.update(parameter_counts(system))
    for logger in trainer.loggers:
        logger.log_hyperparams(run_info)
    log.info("parameters: %s", {k: f"{v:,}" for k, v in run_info.items() if k.startswith("params/")})

    metrics: dict[str, float] = {}
    try:
        if cfg.train:
            trainer.fit(system, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        if cfg.test:
            test_datamodule = instantiate(cfg.data.test)
            results = trainer.test(system, datamodule=test_datamodule)
            test_metrics = {k: float(v) for r in results for k, v in r.items()}
            metrics.update(test_metrics)
            if trainer.is_global_zero:
                write_test_results(system.test_rows, test_metrics, output_dir)
    finally:
        for logger in trainer.loggers:
            logger.finalize("success")
        _finish_wandb()
    if trainer.is_global_zero:
        write_run_summary(cfg, metrics, run_info, output_dir)
    return metrics


def write_run_summary(
    cfg: DictConfig, metrics: dict[str, float], run_info: dict[str, Any], output_dir: Path
) -> None:
    """``run.json``: what experiments/collect.py reads (name, data, parameter counts, final metrics)."""
    data_name = str(cfg.data.get("name", "unknown"))
    summary = {
        "name": cfg.name,
        "data": data_name,
        # runs on the embedded sample set only show that the pipeline works
        "smoke": data_name == "sample",
        "git_commit": run_info["git_commit"],
        "params": {k: v for k, v in run_info.items() if k.startswith("params/")},
        "generator": OmegaConf.to_container(cfg.model.generator, resolve=True),
        "metrics": metrics,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "run.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _finish_wandb() -> None:
    try:
        import wandb
    except ImportError:  # pragma: no cover
        return
    if wandb.run is not None:
        wandb.finish()
