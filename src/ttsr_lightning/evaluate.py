"""``python -m ttsr_lightning.evaluate ckpt=PATH``: PSNR/SSIM of a checkpoint on test sets, bicubic beside.

    python -m ttsr_lightning.evaluate ckpt=TTSR-rec.pt                       # CUFED5, L1 references
    python -m ttsr_lightning.evaluate ckpt=TTSR.pt data=cufed5               # L1..L5, LR, stitched
    python -m ttsr_lightning.evaluate ckpt=run.ckpt data=paper sets=[CUFED5_L1,Sun80] save_images=true

``ckpt`` is a Lightning checkpoint of a training run, the official ``TTSR.pt`` / ``TTSR-rec.pt``, or
a generator file of ``python -m ttsr_lightning.official convert``; the log says which it found (see
:func:`ttsr_lightning.infer.load_generator`). The test sets are the ``test:`` part of the ``data``
config (conf/data/*.yaml), optionally only those named in ``sets``. Each set (each CUFED5 reference
level too) is measured with the official protocol (:mod:`ttsr_lightning.metrics`: Y channel, images
rounded to uint8, ``system.crop_border`` px shaved, 0 as the official code) by ``TTSRSystem.test_step``.

Written to the run folder (``outputs/evaluate/<name>/<time>/``):

- ``test_per_image.csv``: set, image, ref, psnr, ssim, psnr_bicubic, ssim_bicubic, one row per image;
- ``test_per_set.csv`` and ``results.md`` (also printed): per set, its reference policy, the number of
  images and the mean PSNR/SSIM of the model and of the bicubic baseline;
- ``test_summary.json``: the logged metrics ``test/<set>/<measure>`` (as a training run writes them);
- ``evaluation.json``: the checkpoint, its kind, the generator config, the protocol and the results;
- ``images/<set>/<image>.png`` with ``save_images=true``.

With the W&B logger (``logger=wandb``, offline by default) the metrics and a table of every image
(scores and LR-up / SR / HR thumbnails) go to the run as well.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import hydra
from hydra.utils import instantiate
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from ttsr_lightning.callbacks import TestImageRecorder
from ttsr_lightning.config_paths import CONFIG_DIR
from ttsr_lightning.data.eval_sets import plain, validate_eval_set_specs
from ttsr_lightning.infer import load_generator
from ttsr_lightning.models import TTSRGenerator
from ttsr_lightning.system import TTSRSystem
from ttsr_lightning.train import _finish_wandb, instantiate_group, write_test_results

log = logging.getLogger(__name__)

MEASURES = ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic")
# TTSRSystem needs an objective to be built; evaluation never calls it.
_UNUSED_OBJECTIVE = {
    "reconstruction": {"_target_": "ttsr_lightning.losses.ReconstructionLoss"},
    "weights": {"reconstruction": 1.0},
}
PROTOCOL = (
    "official TTSR: images rounded to uint8, Y = BT.601 studio swing (65.738, 129.057, 25.064)/256, "
    "PSNR on the whole image, SSIM 11x11 Gaussian (sigma 1.5) valid mode"
)


def select_test_sets(
    specs: Sequence[Mapping[str, Any]], wanted: Sequence[str] | None
) -> list[dict[str, Any]]:
    """The specs of ``data.test.sets`` whose names are in ``wanted`` (all for None), in config order.

    ValueError naming ``sets`` and listing the available names for an unknown or empty selection.
    """
    names = validate_eval_set_specs(specs, "data.test.sets")
    if wanted is None:
        return [plain(spec) for spec in specs]
    unknown = [name for name in wanted if name not in names]
    if unknown or not wanted:
        problem = f"unknown evaluation set(s) {unknown}" if unknown else "no evaluation set chosen"
        raise ValueError(
            f"sets: {problem}; the data config's test sets are {names} (choose other sets with data=...)"
        )
    return [plain(spec) for spec, name in zip(specs, names, strict=True) if name in wanted]


def evaluation_system(generator: TTSRGenerator, system_settings: Mapping[str, Any]) -> TTSRSystem:
    """A :class:`TTSRSystem` around ``generator``, for ``Trainer.test`` (its test_step measures).

    ``system_settings`` is the ``system`` config group (``crop_border``, ...). The system records the
    generator's architecture in its hyper-parameters; the module itself is ``generator``.
    """
    generator_config = {
        "_target_": "ttsr_lightning.models.TTSRGenerator",
        **generator.config,
        "vgg_weights": "random",
    }
    system = TTSRSystem(
        generator=generator_config, discriminator=None, losses=_UNUSED_OBJECTIVE, optim={}, **system_settings
    )
    system.generator = generator
    return system


def per_set_results(
    rows: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, float],
    set_names: Sequence[str],
    reference_policies: Mapping[str, str],
) -> list[dict[str, Any]]:
    """One row per set: set, reference policy, number of images, mean psnr/ssim (model and bicubic)."""
    return [
        {
            "set": name,
            "reference": reference_policies.get(name, ""),
            "images": sum(row["set"] == name for row in rows),
            **{measure: metrics[f"test/{name}/{measure}"] for measure in MEASURES},
        }
        for name in set_names
    ]


def markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    """The per-set results as a Markdown table, PSNR in dB to 3 decimals and SSIM to 4."""
    lines = [
        "| set | reference | images | PSNR | SSIM | bicubic PSNR | bicubic SSIM |",
        "|:--|:--|--:|--:|--:|--:|--:|",
    ]
    for row in results:
        lines.append(
            f"| {row['set']} | {row['reference']} | {row['images']} | {row['psnr']:.3f} | {row['ssim']:.4f} "
            f"| {row['psnr_bicubic']:.3f} | {row['ssim_bicubic']:.4f} |"
        )
    return "\n".join(lines)


def write_per_set_results(results: Sequence[Mapping[str, Any]], output_dir: Path) -> None:
    """``test_per_set.csv`` and ``results.md`` in ``output_dir``."""
    with open(output_dir / "test_per_set.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    (output_dir / "results.md").write_text(markdown_table(results) + "\n")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Load ``cfg.ckpt``, test it on the chosen sets, write the results; returns the logged metrics."""
    if cfg.ckpt is None:
        raise ValueError("ckpt: give the checkpoint to evaluate, e.g. ckpt=TTSR-rec.pt")
    generator, description, search_transfer = load_generator(
        cfg.ckpt, cfg.search_transfer, cfg.search_chunk_size
    )
    log.info("ckpt %s: %s", cfg.ckpt, description)
    output_dir = Path(cfg.paths.output_dir)

    wanted = cfg.sets
    if isinstance(wanted, str):  # sets=CUFED5_L1, without brackets
        wanted = [wanted]
    sets = select_test_sets(cfg.data.test.sets, None if wanted is None else list(wanted))
    datamodule = instantiate(cfg.data.test, sets=sets)
    system_settings = cast(dict[str, Any], OmegaConf.to_container(cfg.system, resolve=True))
    system = evaluation_system(generator, system_settings)

    if cfg.logger and "wandb" in cfg.logger:
        with open_dict(cfg):
            cfg.logger.wandb.job_type = "evaluate"
    loggers: list[Logger] = instantiate_group(cfg.get("logger"))
    recorder = TestImageRecorder(
        image_dir=str(output_dir / "images") if cfg.save_images else None, thumbnail_size=cfg.thumbnail_size
    )
    trainer: Trainer = instantiate(cfg.trainer, callbacks=[recorder], logger=loggers or False)
    provenance = {
        "ckpt": str(Path(cfg.ckpt).resolve()),
        "checkpoint": description,
        "generator": generator.config,
        "search_transfer": search_transfer,
        "crop_border": system.crop_border,
        "protocol": PROTOCOL,
    }
    for logger in trainer.loggers:
        logger.log_hyperparams({**provenance, "test_sets": sets})

    try:
        results = trainer.test(system, datamodule=datamodule)
    finally:
        for logger in trainer.loggers:
            logger.finalize("success")
        _finish_wandb()
    metrics = {key: float(value) for result in results for key, value in result.items()}
    if trainer.is_global_zero:
        write_test_results(system.test_rows, metrics, output_dir)
        set_results = per_set_results(
            system.test_rows, metrics, datamodule.test_set_names, datamodule.reference_policies
        )
        write_per_set_results(set_results, output_dir)
        summary = {**provenance, "results": set_results}
        (output_dir / "evaluation.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"\n{Path(cfg.ckpt).name} ({description})\n\n{markdown_table(set_results)}\n")
        log.info("results in %s", output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
