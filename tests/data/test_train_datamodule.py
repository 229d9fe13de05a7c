"""TrainDataModule: training and validation loaders on real layouts; the epoch reaches the dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import OmegaConf

from ttsr_lightning.data import EpochSampler, TrainDataModule


def cufed5_spec(root: Path, level: int | str = 1) -> dict[str, Any]:
    return {"dataset": "cufed5", "root": str(root), "ref_level": level}


def test_sample_set_training_and_validation_loaders(sample_root: Path) -> None:
    cufed = sample_root / "CUFED"
    module = TrainDataModule(
        str(cufed / "train"),
        [cufed5_spec(cufed / "test" / "CUFED5")],
        batch_size=4,
        patch_size=64,  # the sample's training images are its patches (conf/data/sample.yaml)
        sample_root=str(sample_root),
    )
    module.prepare_data()  # already built: reused
    module.setup("fit")
    assert module.val_set_names == ["CUFED5_L1"]
    train = module.train_dataloader()
    assert isinstance(train.sampler, EpochSampler) and len(train) == 20  # 80 pairs / 4
    batch = next(iter(train))
    assert {key: tuple(value.shape) for key, value in batch.items()} == {
        "lr": (4, 3, 16, 16),
        "lr_up": (4, 3, 64, 64),
        "hr": (4, 3, 64, 64),
        "ref": (4, 3, 64, 64),
        "ref_down_up": (4, 3, 64, 64),
    }
    (val,) = module.val_dataloader()
    items = list(val)
    assert len(items) == 6 and items[1]["name"] == ["001_0"] and items[1]["ref_name"] == ["001_1"]
    assert items[1]["hr"].shape == (1, 3, 160, 240)  # 162x243 cropped to multiples of 4


def test_held_out_fraction_is_a_seeded_disjoint_split_evaluated_like_a_test_set(
    cufed_train: Path, cufed5: Path
) -> None:
    module = TrainDataModule(str(cufed_train), [cufed5_spec(cufed5, "lr")], val_fraction=0.5, seed=3)
    module.setup("fit")
    assert module.val_set_names == ["CUFED_heldout", "CUFED5_LR"]
    held_out = [item.name for item in module.val_datasets[0].items]
    assert len(held_out) == 2 and len(module.train_indices) == 2
    assert module.train_set is not None
    assert set(held_out).isdisjoint(module.train_set.pairs[i].input.stem for i in module.train_indices)
    again = TrainDataModule(str(cufed_train), val_fraction=0.5, seed=3)
    again.setup("fit")
    assert [item.name for item in again.val_datasets[0].items] == held_out
    splits = set()
    for seed in range(6):
        other = TrainDataModule(str(cufed_train), val_fraction=0.5, seed=seed)
        other.setup("fit")
        splits.add(tuple(other.train_indices))
    assert len(splits) > 1
    item = next(iter(module.val_dataloader()[0]))
    assert (
        item["hr"].shape == (1, 3, 160, 160)
        and item["name"] == [held_out[0]]
        and item["ref_name"] == [held_out[0]]
    )
    sampled = {index for _, index in module.train_dataloader().sampler}
    assert sampled == set(module.train_indices)


def test_hyper_parameters_are_plain_containers(cufed_train: Path, cufed5: Path) -> None:
    specs = OmegaConf.create([cufed5_spec(cufed5)])
    module = TrainDataModule(str(cufed_train), specs)
    assert type(module.hparams["val_sets"]) is list and type(module.hparams["val_sets"][0]) is dict


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"batch_size": 0}, r"data.train.batch_size must be >= 1"),
        ({"num_workers": -1}, r"data.train.num_workers must be >= 0"),
        ({"seed": -1}, r"data.train.seed must be >= 0"),
        (
            {"val_sets": [{"dataset": "set5"}]},
            r"data.train.val_sets\[0\]: expected a mapping with dataset: one of",
        ),
        (
            {"val_sets": [{"dataset": "urban100", "root": "a"}, {"dataset": "urban100", "root": "b"}]},
            "Urban100",
        ),
    ],
)
def test_bad_configuration_is_named(cufed_train: Path, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainDataModule(str(cufed_train), **arguments)


def test_too_small_a_held_out_fraction_is_named(cufed_train: Path) -> None:
    module = TrainDataModule(str(cufed_train), val_fraction=0.1)
    with pytest.raises(ValueError, match=r"val_fraction=0.1 holds out 0 of 4 training pairs"):
        module.setup("fit")


class Recorder(pl.LightningModule):
    """Records the HR batches it is fed; learns nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.train_batches: list[tuple[int, torch.Tensor]] = []
        self.val_names: list[tuple[int, str]] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.train_batches.append((self.current_epoch, batch["hr"].clone()))
        return self.weight * batch["hr"].mean()

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.val_names.append((dataloader_idx, batch["name"][0]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(module: TrainDataModule, epochs: int, tmp_path: Path, ckpt_path: Path | None = None) -> Recorder:
    """Train a Recorder for ``epochs`` epochs on ``module``'s loaders; returns what it saw."""
    recorder = Recorder()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        callbacks=[pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(recorder, datamodule=module, ckpt_path=ckpt_path)
    return recorder


def test_lightning_hands_each_epoch_to_the_augmentation(
    cufed_train: Path, cufed5: Path, tmp_path: Path
) -> None:
    module = TrainDataModule(
        str(cufed_train), [cufed5_spec(cufed5), cufed5_spec(cufed5, 2)], batch_size=2, seed=9
    )
    recorder = fit(module, 3, tmp_path)
    assert [epoch for epoch, _ in recorder.train_batches] == [0, 0, 1, 1, 2, 2]
    dataset = module.train_set
    assert dataset is not None
    for position, (epoch, hr) in enumerate(recorder.train_batches):
        sampler = EpochSampler(range(4), shuffle=True, seed=9)
        sampler.set_epoch(epoch)
        keys = list(sampler)[2 * (position % 2) : 2 * (position % 2) + 2]
        assert torch.equal(hr, torch.stack([dataset[key]["hr"] for key in keys])), (epoch, keys)
    assert recorder.val_names[:4] == [(0, "000_0"), (0, "001_0"), (1, "000_0"), (1, "001_0")]


def test_fit_without_validation_sets(cufed_train: Path, tmp_path: Path) -> None:
    module = TrainDataModule(str(cufed_train), batch_size=4)
    recorder = fit(module, 1, tmp_path)
    assert module.val_set_names == [] and len(recorder.train_batches) == 1 and recorder.val_names == []


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_resumed_run_draws_what_an_uninterrupted_one_would(
    cufed_train: Path, tmp_path: Path, num_workers: int
) -> None:
    def module() -> TrainDataModule:
        return TrainDataModule(str(cufed_train), batch_size=2, seed=1, num_workers=num_workers)

    uninterrupted = fit(module(), 2, tmp_path / "a")
    fit(module(), 1, tmp_path / "b")
    resumed = fit(
        module(),
        2,
        tmp_path / "b",
        tmp_path / "b" / "last.ckpt",
    )
    assert [epoch for epoch, _ in resumed.train_batches] == [1, 1]
    assert all(
        torch.equal(a, b)
        for (_, a), (_, b) in zip(uninterrupted.train_batches[2:], resumed.train_batches, strict=True)
    )


def test_the_training_loader_reads_its_sampler_at_the_first_batch(cufed_train: Path) -> None:
    """Lightning creates the iterator before it calls ``set_epoch`` (and keeps it on a resume); with
    workers, torch's iterator would read the sampler at once, i.e. with the previous epoch."""
    module = TrainDataModule(str(cufed_train), batch_size=2, seed=1, num_workers=1)
    module.setup("fit")
    loader = module.train_dataloader()
    loader.load_state_dict({"epoch": 3, "batches_done": 1})  # a mid-epoch checkpoint: batch 2 of epoch 3
    iterator = iter(loader)
    loader.sampler.set_epoch(3)
    expected = EpochSampler(range(4), shuffle=True, seed=1)
    expected.set_epoch(3)
    keys = list(expected)[2:4]
    assert module.train_set is not None
    assert torch.equal(next(iterator)["hr"], torch.stack([module.train_set[key]["hr"] for key in keys]))


def test_the_training_loader_holds_its_place_in_the_epoch_and_resumes_from_it(cufed_train: Path) -> None:
    """What Lightning stores with a checkpoint (the loader's state) and restores into the resumed run's
    new loader: the rest of that epoch, and a state that counts on from the restored batches."""
    module = TrainDataModule(str(cufed_train), batch_size=1, seed=2)
    module.setup("fit")
    loader = module.train_dataloader()
    loader.sampler.set_epoch(1)
    iterator = iter(loader)
    whole_epoch = [next(iterator)["hr"] for _ in range(4)]
    assert loader.state_dict() == {"epoch": 1, "batches_done": 4}

    first = module.train_dataloader()
    first.sampler.set_epoch(1)
    iterator = iter(first)
    next(iterator)
    assert first.state_dict() == {"epoch": 1, "batches_done": 1}  # a checkpoint after batch 1

    resumed = TrainDataModule(str(cufed_train), batch_size=1, seed=2)
    resumed.setup("fit")
    loader = resumed.train_dataloader()
    loader.load_state_dict(first.state_dict())
    assert loader.state_dict() == {"epoch": 1, "batches_done": 1}  # before its epoch starts
    iterator = iter(loader)
    loader.sampler.set_epoch(1)
    rest = [next(iterator)["hr"] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(rest, whole_epoch[1:], strict=True))
    assert loader.state_dict() == {"epoch": 1, "batches_done": 4}
    loader.sampler.set_epoch(2)  # the next epoch starts from its first batch
    next(iter(loader))
    assert loader.state_dict() == {"epoch": 2, "batches_done": 1}
