"""Compose the project's Hydra config in tests, with outputs under a tmp folder."""

from __future__ import annotations

from pathlib import Path

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

# A model and schedule small enough for a CPU test: 8 channels, one residual block per stage.
TINY = [
    "model.generator.n_feats=8",
    "model.generator.num_res_blocks=[1,1,1,1]",
    "model.generator.vgg_weights=random",
    "trainer.accelerator=cpu",
    "data.train.patch_size=32",
    "data.train.batch_size=2",
    "trainer.max_epochs=2",
    "trainer.check_val_every_n_epoch=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "optim.warmup_epochs=1",
    "logger=none",
]


def compose_config(
    tmp_path: Path, data_dir: Path, overrides: list[str] = (), tiny: bool = True
) -> DictConfig:
    """The config `python -m ttsr_lightning <overrides>` would run, writing below ``tmp_path``."""
    GlobalHydra.instance().clear()
    all_overrides = [
        f"paths.root_dir={tmp_path}",
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={tmp_path / 'run'}",
        *(TINY if tiny else []),
        *overrides,
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
