"""train(cfg): build data, system, loggers and callbacks from a composed config, fit, then test."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from ttsr_lightning.builders import finish_loggers, instantiate_group, instantiate_node
from ttsr_lightning.callbacks import AtomicCheckpointIO, EvaluationResults, ResumeCheckpoint
from ttsr_lightning.checkpoints.loading import load_generator_weights
from ttsr_lightning.checkpoints.run_checkpoint import check_run_checkpoint
from ttsr_lightning.cli import exit_code
from ttsr_lightning.distributed import launched_as_rank_zero
from ttsr_lightning.errors import NonFiniteError, Preempted
from ttsr_lightning.files import remove_unfinished_writes, run_folder_lock, write_json
from ttsr_lightning.preflight import preflight_training
from ttsr_lightning.provenance import git_commit, machine_description, parameter_counts
from ttsr_lightning.result_files import margins
from ttsr_lightning.run_folder import (
    continue_command,
    recorded_overrides,
    resume_checkpoint,
    run_overrides,
    unfinished_runs,
    wandb_run_id,
)
from ttsr_lightning.settings import check_run_config, resolved_run_config
from ttsr_lightning.system import TTSRSystem

log = logging.getLogger(__name__)


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
    check_run_config(resolved_run_config(cfg))
    with run_folder_lock(Path(cfg.paths.output_dir), enabled=launched_as_rank_zero()):
        return fit_and_test(cfg)


def fit_and_test(cfg: DictConfig) -> dict[str, float]:
    """:func:`train` once its config is checked and its run folder locked: the Trainer, the pre-flight
    (rank 0, before the other processes exist), then fit and test."""
    output_dir = Path(cfg.paths.output_dir)
    # the Trainer first: Lightning refuses its own values (max_epochs, limit_*_batches, ...) before the
    # pre-flight reads any data or weights
    callbacks: list[Callback] = instantiate_group("callbacks", cfg.get("callbacks"))
    _continue_wandb_run(cfg.get("logger"), output_dir)
    loggers: list[Logger] = instantiate_group("logger", cfg.get("logger"))
    # checkpoints are written atomically, next to their destination (see AtomicCheckpointIO)
    plugins = [AtomicCheckpointIO(), *(instantiate_node("trainer.plugins", cfg.trainer.get("plugins")) or [])]
    trainer: Trainer = instantiate_node(
        "trainer", cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins
    )
    if launched_as_rank_zero():
        preflight_training(cfg, output_dir)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate_node("data.train", cfg.data.train)
    system = build_system(cfg)
    resume = next((callback for callback in callbacks if isinstance(callback, ResumeCheckpoint)), None)
    ckpt_path = cfg.ckpt_path
    if resume is not None:
        ckpt_path = resume_checkpoint(ckpt_path, resume.dirpath)
    if cfg.train:
        log.info("run folder %s: %s", output_dir, f"resuming {ckpt_path}" if ckpt_path else "a new training")
        if ckpt_path is None and launched_as_rank_zero():
            _mention_unfinished_run(output_dir, cfg.name)
    if cfg.init_weights is not None and ckpt_path in (None, "last"):
        weights = load_generator_weights(system.generator, cfg.init_weights)
        log.info("generator initialised from %s (%s)", cfg.init_weights, weights.description)
    if ckpt_path not in (None, "last"):
        check_run_checkpoint(ckpt_path, system)
    remove_unfinished_writes(
        {output_dir, *(Path(getattr(c, "dirpath", None) or output_dir) for c in callbacks)}
    )

    run_info = {"config": OmegaConf.to_container(cfg, resolve=True), "git_commit": git_commit()}
    run_info.update(parameter_counts(system.generator, system.discriminator))
    for logger in trainer.loggers:
        logger.log_hyperparams(run_info)
    log.info("parameters: %s", {k: f"{v:,}" for k, v in run_info.items() if k.startswith("params/")})

    metrics: dict[str, float] = {}
    set_results: list[dict[str, Any]] = []
    ended_by: BaseException | None = None
    try:
        if cfg.train:
            trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt_path)
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
                        lpips=system.lpips_description,
                        git_commit=run_info["git_commit"],
                    )
            results = trainer.test(system, datamodule=instantiate_node("data.test", cfg.data.test))
            metrics.update({k: float(v) for r in results for k, v in r.items()})
            set_results = [
                row
                for callback in callbacks
                if isinstance(callback, EvaluationResults)
                for row in callback.set_results
                if row["protocol"] == system.protocols[0].name
            ]
    except SIGTERMException as exc:
        ended_by = Preempted(_preempted_message(trainer, resume))
        raise ended_by from exc
    except NonFiniteError as exc:
        ended_by = NonFiniteError(_nonfinite_message(exc, resume, system.nonfinite_skips))
        raise ended_by from exc
    except BaseException as exc:
        ended_by = exc
        raise
    finally:
        finish_loggers(
            trainer, 0 if ended_by is None else exit_code(ended_by), preempted=isinstance(ended_by, Preempted)
        )
    if trainer.is_global_zero:
        write_run_summary(cfg, metrics, run_info, output_dir, margins(set_results))
        if set_results:
            print(summary_text(set_results, output_dir), flush=True)
    return metrics


def summary_text(set_results: list[dict[str, Any]], output_dir: Path) -> str:
    """The end-of-run summary of one protocol's per-set results (the rows of
    :func:`~ttsr_lightning.result_files.per_set_results`): every test set's PSNR beside bicubic, and
    what the reference adds (:func:`~ttsr_lightning.result_files.margins`)."""
    protocol = set_results[0]["protocol"]
    lines = [
        f"Test results of the final weights ({protocol} protocol; PSNR in dB, on the Y channel):",
        f"  {'set':<22} {'PSNR':>7} {'bicubic':>8} {'over bicubic':>13} {'over LR as reference':>21}",
    ]
    for row, margin in zip(set_results, margins(set_results), strict=True):
        over_lr = margin["psnr_over_lr_reference"]
        lines.append(
            f"  {row['set']:<22} {row['psnr']:>7.3f} {row['psnr_bicubic']:>8.3f} "
            f"{margin['psnr_over_bicubic']:>+10.3f} dB {'' if over_lr is None else f'{over_lr:>+18.3f} dB'}"
        )
    lines.append(f"  (results.md / results.json, panels/ in {output_dir})")
    return "\n".join(lines)


def _continue_wandb_run(loggers: DictConfig | None, output_dir: Path) -> None:
    """Give a W&B logger's config the run folder's W&B run id (``resume="allow"``), so a resumed training
    logs to the same W&B run. Only rank 0's logger writes, so only rank 0 keeps the id."""
    if not loggers or rank_zero_only.rank != 0:  # type: ignore[attr-defined]
        return
    for node in loggers.values():
        is_wandb = isinstance(node, DictConfig) and str(node.get("_target_", "")).endswith("WandbLogger")
        if is_wandb and node.get("id") is None:
            with open_dict(node):
                node.id = wandb_run_id(output_dir)
                node.resume = "allow"


def _preempted_message(trainer: Trainer, resume: ResumeCheckpoint | None) -> str:
    where = f"at epoch {trainer.current_epoch}"
    if resume is None:
        return f"stopped by SIGTERM {where}; no ResumeCheckpoint is configured"
    return (
        f"stopped by SIGTERM {where} after {resume.batches_seen} training batches, saved in "
        f"{resume.last_path}; continue it with: {continue_command(resume.last_path)}"
    )


def _nonfinite_message(exc: NonFiniteError, resume: ResumeCheckpoint | None, skips: int) -> str:
    """The non-finite stop's line, with the command that continues from the last good checkpoint,
    skipping one more such batch (the same batch would stop the run again)."""
    if resume is None or not resume.last_path.is_file():
        return str(exc)
    extra = [f"optim.max_nonfinite_skips={skips + 1}"]
    overrides = [o for o in run_overrides() if not o.startswith("optim.max_nonfinite_skips=")]
    return f"{exc}; to skip it and continue: {continue_command(resume.last_path, overrides, extra)}"


def _mention_unfinished_run(output_dir: Path, name: str) -> None:
    """A new training beside an earlier run of the same name that stopped before it finished (killed):
    say how to continue that one instead (this one goes on anew)."""
    for earlier in unfinished_runs(output_dir.parent, exclude=output_dir):
        recorded = recorded_overrides(earlier)
        if recorded is not None:
            log.warning(
                "an earlier run of %s, in %s, stopped before it finished (killed?); this run starts a new "
                "training in %s. To continue that one instead: %s",
                name,
                earlier,
                output_dir,
                continue_command(earlier / "checkpoints" / "last.ckpt", recorded),
            )
            return


def write_run_summary(
    cfg: DictConfig,
    metrics: dict[str, float],
    run_info: dict[str, Any],
    output_dir: Path,
    set_margins: Sequence[dict[str, Any]] = (),
) -> None:
    """``run.json``: what experiments/collect.py reads (name, the model it trains, seed, study, data,
    parameter counts, the generator's and the optimisers' configs, final metrics and their margins over
    bicubic and over the LR as reference), and
    the commit and machine it ran on."""
    data_name = str(cfg.data.get("name", "unknown"))
    study = cfg.get("study")
    summary = {
        "kind": "train",
        "name": cfg.name,
        "trains": cfg.get("trains") or cfg.name,
        "seed": cfg.seed,
        "study": study,
        "data": data_name,
        # runs on the embedded sample set outside a study only show that the pipeline works
        "smoke": data_name == "sample" and study is None,
        "margins": list(set_margins),
        "git_commit": run_info["git_commit"],
        "machine": machine_description(),
        "params": {k: v for k, v in run_info.items() if k.startswith("params/")},
        "generator": OmegaConf.to_container(cfg.model.generator, resolve=True),
        # the optimisers and schedulers it trained with
        "optim": OmegaConf.to_container(cfg.optim, resolve=True),
        # the protocol of the unprefixed test metrics (the first of conf/protocol/ selected)
        "protocol": next(iter(cfg.protocol)) if cfg.get("protocol") else "ttsr_official",
        "metrics": metrics,
    }
    write_json(output_dir / "run.json", summary, sort_keys=True)
