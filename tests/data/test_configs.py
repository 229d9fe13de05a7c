"""conf/data/*.yaml: each composes, and its train: / test: blocks instantiate the DataModules."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from ttsr_lightning.config_paths import CONFIG_DIR
from ttsr_lightning.data import TestDataModule, TrainDataModule
from ttsr_lightning.data.photo_dataset import BuildResult

DATA_CONFIGS = sorted(path.stem for path in (CONFIG_DIR / "data").glob("*.yaml"))


def compose_data(tmp_path: Path, name: str, data_dir: Path) -> DictConfig:
    """Compose only the data group (plus the two keys it interpolates) from the project's conf/."""
    primary = tmp_path / "primary.yaml"
    primary.write_text(
        f"defaults:\n  - data: {name}\n  - _self_\nseed: 5\npaths:\n  data_dir: {data_dir}\n"
        f"hydra:\n  searchpath:\n    - file://{CONFIG_DIR}\n"
    )
    with initialize_config_dir(str(tmp_path), version_base="1.3"):
        return compose("primary")


def test_every_config_is_listed() -> None:
    assert DATA_CONFIGS == [
        "cufed", "cufed5", "manga109", "paper", "photos", "sample", "sun80", "urban100", "wrsr"
    ]  # fmt: skip


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_config_instantiates_both_datamodules(name: str, tmp_path: Path) -> None:
    cfg = compose_data(tmp_path, name, tmp_path / "data")
    train, test = instantiate(cfg.data.train), instantiate(cfg.data.test)
    assert isinstance(train, TrainDataModule) and isinstance(test, TestDataModule)
    assert train.hparams["seed"] == 5 and str(tmp_path / "data") in train.hparams["train_root"]
    assert type(test.hparams["sets"][0]) is dict  # _convert_: all -> primitives in checkpoints
    assert train.val_set_names == ["CUFED5_L1"] and cfg.data.name == name
    every_level = [
        "CUFED5_L1",
        "CUFED5_L2",
        "CUFED5_L3",
        "CUFED5_L4",
        "CUFED5_L5",
        "CUFED5_LR",
        "CUFED5_stitched",
        "CUFED5_stitched_masa",
        "CUFED5_all5",
    ]
    expected = {
        "sample": every_level,
        "cufed": ["CUFED5_L1"],
        "cufed5": every_level,
        "photos": every_level,
        "sun80": ["Sun80", "Sun80_all"],
        "urban100": ["Urban100"],
        "manga109": ["Manga109", "Manga109_LR"],
        "paper": ["CUFED5_stitched", "CUFED5_L1", "CUFED5_all5", "Sun80", "Urban100", "Manga109"],
        "wrsr": ["WR-SR"],
    }
    assert test.test_set_names == expected[name]


def test_sample_config_runs_with_no_download(tmp_path: Path) -> None:
    cfg = compose_data(tmp_path, "sample", tmp_path / "data")
    train, test = instantiate(cfg.data.train), instantiate(cfg.data.test)
    train.prepare_data()  # builds the sample set under data_dir/sample
    train.setup("fit")
    test.setup("test")
    assert len(train.train_set) == 80 and len(train.val_datasets[0]) == 6
    assert [len(loader) for loader in test.test_dataloader()] == [6] * 9
    patch = cfg.data.train.patch_size
    batch = next(iter(train.train_dataloader()))
    assert batch["hr"].shape == batch["ref"].shape == (cfg.data.train.batch_size, 3, patch, patch)


def test_photos_config_reads_a_built_dataset_at_the_default_runs_scale(
    built_photos: BuildResult, tmp_path: Path
) -> None:
    cfg = compose_data(tmp_path, "photos", built_photos.out)
    train, test = instantiate(cfg.data.train), instantiate(cfg.data.test)
    train.setup("fit")
    test.setup("test")
    assert len(train.train_set) == built_photos.manifest["counts"]["train_pairs"] == 21
    assert [len(loader) for loader in test.test_dataloader()] == [1] * 9  # one group, every level
    batch = next(iter(train.train_dataloader()))
    assert batch["hr"].shape == batch["ref"].shape == (4, 3, 64, 64)  # the patch the dataset was built with
