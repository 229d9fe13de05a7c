"""``python -m ttsr_lightning.evaluate ckpt=PATH``: PSNR/SSIM/LPIPS of a checkpoint, bicubic beside.

    python -m ttsr_lightning.evaluate ckpt=TTSR-rec.pt                       # CUFED5, L1 references
    python -m ttsr_lightning.evaluate ckpt=TTSR.pt data=cufed5               # L1..L5, LR, stitched
    python -m ttsr_lightning.evaluate ckpt=run.ckpt data=paper sets=[CUFED5_L1,Sun80] save_images=true
    python -m ttsr_lightning.evaluate ckpt=run.ckpt trainer=ddp_cpu          # several processes, same rows

``ckpt`` is any weights file :mod:`ttsr_lightning.checkpoints.loading` reads (a training run's ``.ckpt``, the
official ``TTSR.pt`` / ``TTSR-rec.pt``, a converted generator file); only the generator is built
(:class:`~ttsr_lightning.evaluation_module.EvaluationModule`: no losses, no critic). The test sets are the
``test:`` part of the ``data`` config, optionally only those named in ``sets``; each is measured with
the official protocol (:mod:`ttsr_lightning.metrics`), the bicubic baseline beside it, and with LPIPS
(AlexNet v0.1, lower is better) when its weights are found (``lpips``: auto, true, false or a path; see
:mod:`ttsr_lightning.models.lpips`; ``provenance.lpips`` in ``results.json`` says what was used or why
it was skipped).

Written to the run folder (``outputs/evaluate/<name>/<time>/``) by the ``EvaluationResults`` callback,
every image of every set exactly once whatever the number of processes: ``test_per_image.csv``,
``test_per_set.csv``, ``results.md`` (also printed), ``results.json`` (with how the numbers were
obtained: checkpoint, its kind, the run it came from, protocol, commit), ``images/<set>/<image>.png``
with ``save_images=true``, and the image panels of the first images of each set under ``panels/``.
A folder that already holds results is refused unless ``overwrite=true``.
With the W&B logger the metrics and a table of every image go to the run as well.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from ttsr_lightning.budgeted import parse_halo, parse_memory_setting
from ttsr_lightning.builders import finish_loggers, instantiate_group, instantiate_node
from ttsr_lightning.callbacks import EvaluationResults, ImagePanelLogger
from ttsr_lightning.checkpoints.loading import load_generator
from ttsr_lightning.cli import hydra_entry_point
from ttsr_lightning.data.eval_sets import plain, validate_eval_set_specs
from ttsr_lightning.distributed import launched_as_rank_zero
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.evaluation_module import EvaluationModule
from ttsr_lightning.files import check_new_output, remove_unfinished_writes, run_folder_lock
from ttsr_lightning.preflight import preflight_evaluation
from ttsr_lightning.protocols import protocols_from_config
from ttsr_lightning.provenance import git_commit
from ttsr_lightning.result_files import RESULT_FILES, write_table_layout

log = logging.getLogger(__name__)


def select_test_sets(
    specs: Sequence[Mapping[str, Any]], wanted: Sequence[str] | None
) -> list[dict[str, Any]]:
    """The specs of ``data.test.sets`` whose names are in ``wanted`` (all for None), in config order.

    ConfigError naming ``sets`` and listing the available names for an unknown or empty selection.
    """
    names = validate_eval_set_specs(specs, "data.test.sets")
    if wanted is None:
        return [plain(spec) for spec in specs]
    unknown = [name for name in wanted if name not in names]
    if unknown or not wanted:
        problem = f"unknown evaluation set(s) {unknown}" if unknown else "no evaluation set chosen"
        raise ConfigError(
            f"sets: {problem}; the data config's test sets are {names} (choose other sets with data=...)"
        )
    return [plain(spec) for spec, name in zip(specs, names, strict=True) if name in wanted]


def source_run(ckpt: Path) -> tuple[str, str] | None:
    """(run name, the model it trains) of the training run a ``<run>/checkpoints/*.ckpt`` belongs to
    (from the run's ``run.json``, or its ``.hydra/config.yaml`` while it trains), or None for a file
    outside a run."""
    run_dir = ckpt.resolve().parent.parent
    if (run_dir / "run.json").is_file():
        info = json.loads((run_dir / "run.json").read_text())
        return str(info["name"]), str(info.get("trains") or info["name"])
    if (run_dir / ".hydra" / "config.yaml").is_file():
        config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        if isinstance(config, DictConfig) and config.get("name") is not None:
            name = str(config.get("name"))
            trains = OmegaConf.select(config, "trains", default=None, throw_on_resolution_failure=False)
            return name, str(trains or name)
    return None


def evaluate(cfg: DictConfig) -> list[dict[str, Any]]:
    """Load ``cfg.ckpt``, test it on the chosen sets, write the results; returns the per-set results.

    An earlier result in the run folder is never replaced without ``overwrite=true``, and the folder
    is locked while the evaluation runs."""
    output_dir = Path(cfg.paths.output_dir)
    earlier = [output_dir / name for name in RESULT_FILES]
    check_new_output(earlier, "hydra.run.dir", bool(cfg.overwrite))
    with run_folder_lock(output_dir, enabled=launched_as_rank_zero()):
        remove_unfinished_writes([output_dir], recursive=True)  # panels/ and images/ included
        return evaluate_checkpoint(cfg)


def evaluate_checkpoint(cfg: DictConfig) -> list[dict[str, Any]]:
    """:func:`evaluate` once its run folder is checked and locked."""
    if cfg.ckpt is None:
        raise ConfigError("ckpt: give the checkpoint to evaluate, e.g. ckpt=TTSR-rec.pt")
    try:
        max_memory = parse_memory_setting(cfg.max_memory)
        halo = parse_halo(cfg.halo)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    output_dir = Path(cfg.paths.output_dir)
    wanted = cfg.sets
    if isinstance(wanted, str):  # sets=CUFED5_L1, without brackets
        wanted = [wanted]
    sets = select_test_sets(cfg.data.test.sets, None if wanted is None else list(wanted))
    # the Trainer first: Lightning refuses its own values (limit_test_batches, ...) before any data or
    # weights are read
    if cfg.logger and "wandb" in cfg.logger:
        with open_dict(cfg):
            cfg.logger.wandb.job_type = "evaluate"
    loggers: list[Logger] = instantiate_group("logger", cfg.get("logger"))
    results = EvaluationResults(
        str(output_dir), save_images=cfg.save_images, thumbnail_size=cfg.thumbnail_size
    )
    panels = ImagePanelLogger(str(output_dir / "panels"), max_images=cfg.num_image_panels)
    trainer: Trainer = instantiate_node(
        "trainer", cfg.trainer, callbacks=[results, panels], logger=loggers or False
    )
    if launched_as_rank_zero():  # before the other processes exist
        preflight_evaluation(cfg, sets, output_dir)
    generator, description, generator_config = load_generator(
        cfg.ckpt, cfg.search_transfer, relevance_kernel=cfg.relevance_kernel
    )
    log.info("ckpt %s: %s", cfg.ckpt, description)
    datamodule = instantiate_node("data.test", cfg.data.test, sets=sets)
    protocols = protocols_from_config(OmegaConf.to_container(cfg.protocol, resolve=True))  # type: ignore[arg-type]
    module = EvaluationModule(generator, protocols, max_memory=max_memory, lpips=cfg.lpips, halo=halo)

    data_name = str(cfg.data.get("name", "unknown"))
    source = source_run(Path(cfg.ckpt))
    results.provenance.update(
        kind="evaluate",
        data=data_name,
        # evaluations on the embedded sample set only show that the pipeline works
        smoke=data_name == "sample",
        ckpt=str(Path(cfg.ckpt).resolve()),
        checkpoint=description,
        run=source[0] if source else Path(cfg.ckpt).stem,
        trains=source[1] if source else Path(cfg.ckpt).stem,
        search_transfer=cfg.search_transfer,
        relevance_kernel=cfg.relevance_kernel,
        max_memory=max_memory,
        halo=halo,
        protocols=[protocol.as_dict() for protocol in protocols],
        lpips=module.lpips_description,
        git_commit=git_commit(),
        generator=generator_config,
    )
    for logger in trainer.loggers:
        logger.log_hyperparams({**results.provenance, "test_sets": sets})
    try:
        trainer.test(module, datamodule=datamodule)
    finally:
        finish_loggers(trainer)
    if trainer.is_global_zero:
        print(f"\n{Path(cfg.ckpt).name} ({description})\n\n{(output_dir / 'results.md').read_text()}")
        if cfg.get("table"):
            layout = OmegaConf.to_container(cfg.table, resolve=True)
            print(write_table_layout(results.set_results, layout, protocols[0].name, output_dir))  # type: ignore[arg-type]
        print(f"results written to {output_dir}")
    return results.set_results


main = hydra_entry_point(evaluate, "evaluate")

if __name__ == "__main__":
    main()
