"""Compose the project's Hydra config in tests, with outputs under a tmp folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from ttsr_lightning.config_paths import CONFIG_DIR

# An experiment's smoke-sized run: its own architecture switches and widths stay; depth, data and
# schedule shrink (one batch of every phase, every loss of its recipe from the first step).
SMOKE = [
    "data=sample",
    "model.generator.num_res_blocks=[1,1,1,1]",
    "model.generator.vgg_weights=random",
    "data.train.patch_size=32",
    "data.train.batch_size=2",
    "optim.warmup_epochs=0",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.check_val_every_n_epoch=1",
    "logger=none",
    "trainer.enable_progress_bar=false",
]

# The tiny generator of the tests that build one directly: debug=tiny's own (conf/debug/tiny.yaml: 8
# channels, one residual block per stage, random VGG19), so a test's generator is the users' tiny one.
TINY_GENERATOR: dict[str, Any] = OmegaConf.to_container(  # type: ignore[assignment]
    OmegaConf.load(CONFIG_DIR / "debug" / "tiny.yaml").model.generator
)

# A model and schedule small enough for a CPU test (conf/debug/tiny.yaml: 8 channels, one residual block
# per stage, two epochs of two batches): the users' `debug=tiny`. Given last, as the command line does
# with it, so it shrinks an experiment's settings too. The command-line entry points take it as it is
# (they move `debug=` to the end as `+debug=`), so subprocess tests pass this same list.
TINY = ["+debug=tiny"]


def compose_config(
    tmp_path: Path, data_dir: Path, overrides: list[str] = (), tiny: bool = True
) -> DictConfig:
    """The config `python -m ttsr_lightning <overrides>` would run, writing below ``tmp_path``."""
    GlobalHydra.instance().clear()
    all_overrides = [
        f"paths.root_dir={tmp_path}",
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={tmp_path / 'run'}",
        *overrides,
        *(TINY if tiny else []),
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=all_overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def compose_evaluate(
    output_dir: Path, data_dir: Path, overrides: list[str], data: str = "cufed5"
) -> DictConfig:
    """The config `python -m ttsr_lightning.evaluate <overrides>` runs: CPU, no logger, below output_dir,
    on the test sets of ``data``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name="evaluate",
            overrides=[
                f"paths.root_dir={output_dir}",
                f"paths.data_dir={data_dir}",
                f"paths.output_dir={output_dir}",
                f"data={data}",
                "data.test.num_workers=0",
                "data.test.pin_memory=false",
                "trainer.accelerator=cpu",
                "trainer.enable_progress_bar=false",
                "+trainer.enable_model_summary=false",
                "logger=none",
                *overrides,
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def paper_losses() -> dict:
    """The ``loss`` group as the package composes it (conf/loss/default.yaml: the paper's terms and
    weights), with random VGG weights for the perceptual loss."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model.generator.vgg_weights=random"])
    return OmegaConf.to_container(cfg.loss, resolve=True)  # type: ignore[return-value]


def compose_infer(overrides: list[str]) -> DictConfig:
    """The config `python -m ttsr_lightning.infer <overrides>` runs, on CPU."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="infer", overrides=["device=cpu", *overrides])
