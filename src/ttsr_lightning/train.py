"""train(cfg): build data, system, loggers and callbacks from a composed config, fit, then test."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from ttsr_lightning.builders import finish_loggers, instantiate_group
from ttsr_lightning.callbacks import AtomicCheckpointIO, EvaluationResults
from ttsr_lightning.checkpoints import check_run_checkpoint, load_generator_weights
from ttsr_lightning.distributed import launched_as_rank_zero
from ttsr_lightning.files import remove_stale_temporaries, run_folder_lock, write_json
from ttsr_lightning.provenance import git_commit, parameter_counts
from ttsr_lightning.settings import check_run_config
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
        protocols=plain(cfg.get("protocol")),
        **plain(cfg.system),
    )


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (unless ``train=false``) and test (unless ``test=false``); returns the final metrics.

    Every config value is checked first; the run folder is locked while the run lives (a second live
    run into it is refused; the other ranks of a DDP run share their rank 0's lock)."""
    check_run_config(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    with run_folder_lock(Path(cfg.paths.output_dir), enabled=launched_as_rank_zero()):
        return fit_and_test(cfg)


def fit_and_test(cfg: DictConfig) -> dict[str, float]:
    """:func:`train` once its config is checked and its run folder locked."""
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    datamodule = instantiate(cfg.data.train)
    system = build_system(cfg)
    if cfg.init_weights is not None:
        weights = load_generator_weights(system.generator, cfg.init_weights)
        log.info("generator initialised from %s (%s)", cfg.init_weights, weights.description)
    if cfg.ckpt_path is not None:
        check_run_checkpoint(cfg.ckpt_path, system)

    callbacks: list[Callback] = instantiate_group(cfg.get("callbacks"))
    for folder in {output_dir, *(Path(getattr(c, "dirpath", None) or output_dir) for c in callbacks)}:
        for leftover in remove_stale_temporaries(folder):
            log.info("removed %s, the unfinished write of a killed run", leftover)
    loggers: list[Logger] = instantiate_group(cfg.get("logger"))
    # checkpoints are written atomically, next to their destination (see AtomicCheckpointIO)
    plugins = [AtomicCheckpointIO(), *(instantiate(cfg.trainer.get("plugins")) or [])]
    trainer: Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins)

    run_info = {"config": OmegaConf.to_container(cfg, resolve=True), "git_commit": git_commit()}
    run_info.update(parameter_counts(system.generator, system.discriminator))
    for logger in trainer.loggers:
        logger.log_hyperparams(run_info)
    log.info("parameters: %s", {k: f"{v:,}" for k, v in run_info.items() if k.startswith("params/")})

    metrics: dict[str, float] = {}
    try:
        if cfg.train:
            trainer.fit(system, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        if cfg.test:
            for callback in callbacks:
                if isinstance(callback, EvaluationResults):
                    callback.provenance.update(
                        kind="train",
                        run=cfg.name,
                        data=str(cfg.data.get("name", "unknown")),
                        weights="the final weights of this run"
                        if cfg.train
                        else f"init_weights={cfg.init_weights}",
                        protocols=[protocol.as_dict() for protocol in system.protocols],
                        git_commit=run_info["git_commit"],
                    )
            results = trainer.test(system, datamodule=instantiate(cfg.data.test))
            metrics.update({k: float(v) for r in results for k, v in r.items()})
    finally:
        finish_loggers(trainer)
    if trainer.is_global_zero:
        write_run_summary(cfg, metrics, run_info, output_dir)
    return metrics


def write_run_summary(
    cfg: DictConfig, metrics: dict[str, float], run_info: dict[str, Any], output_dir: Path
) -> None:
    """``run.json``: what experiments/collect.py reads (name, data, parameter counts, final metrics)."""
    data_name = str(cfg.data.get("name", "unknown"))
    summary = {
        "kind": "train",
        "name": cfg.name,
        "data": data_name,
        # runs on the embedded sample set only show that the pipeline works
        "smoke": data_name == "sample",
        "git_commit": run_info["git_commit"],
        "params": {k: v for k, v in run_info.items() if k.startswith("params/")},
        "generator": OmegaConf.to_container(cfg.model.generator, resolve=True),
        # the protocol of the unprefixed test metrics (the first of conf/protocol/ selected)
        "protocol": next(iter(cfg.protocol)) if cfg.get("protocol") else "ttsr_official",
        "metrics": metrics,
    }
    write_json(output_dir / "run.json", summary, sort_keys=True)
