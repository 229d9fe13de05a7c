"""Exact official preprocessing: our datasets against PIL computations written here, and against the
official loader's own tensors (tests/fixtures/official/official_pipeline.pt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ttsr_lightning.data import CUFED5Dataset, CUFEDTrainDataset
from ttsr_lightning.data.preprocessing import to_tensor

BICUBIC = Image.Resampling.BICUBIC


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32, the official ``astype(float32) / 127.5 - 1``."""
    return torch.from_numpy((array.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1).copy())


def resized(array: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(array).resize((width, height), BICUBIC))


def test_to_tensor_maps_0_and_255_to_minus_one_and_one() -> None:
    image = Image.fromarray(np.array([[[0, 127, 255]]], dtype=np.uint8))
    assert to_tensor(image).flatten().tolist() == [-1.0, pytest.approx(127 / 127.5 - 1), 1.0]
    assert to_tensor(image).dtype == torch.float32


def test_cufed5_item_is_the_official_test_preprocessing(cufed5: Path) -> None:
    item = CUFED5Dataset(cufed5, ref_level=3)[1]
    hr = np.asarray(Image.open(cufed5 / "001_0.png"))[:88, :128]  # 90x130 cropped to multiples of 4
    ref = np.asarray(Image.open(cufed5 / "001_3.png"))
    ref = ref[: ref.shape[0] // 4 * 4, : ref.shape[1] // 4 * 4]
    lr = resized(hr, 32, 22)
    expected = {
        "lr": lr,
        "lr_up": resized(lr, 128, 88),
        "hr": hr,
        "ref": ref,
        "ref_down_up": resized(
            resized(ref, ref.shape[1] // 4, ref.shape[0] // 4), ref.shape[1], ref.shape[0]
        ),
    }
    for key, array in expected.items():
        assert torch.equal(item[key], as_tensor(array)), key
    assert (item["name"], item["ref_name"]) == ("001_0", "001_3")


def test_cufed_training_item_is_the_official_preprocessing_with_zero_padding(cufed_train: Path) -> None:
    item = CUFEDTrainDataset(cufed_train, augment=False)[2]
    hr = np.asarray(Image.open(cufed_train / "input" / "000002.png"))
    ref = np.asarray(Image.open(cufed_train / "ref" / "000002.png"))
    assert ref.shape == (140, 150, 3)
    lr = resized(hr, 40, 40)
    ref_down_up = resized(resized(ref, 37, 35), 150, 140)
    canvas, canvas_down_up = np.zeros((160, 160, 3), np.uint8), np.zeros((160, 160, 3), np.uint8)
    canvas[:140, :150], canvas_down_up[:140, :150] = ref, ref_down_up
    expected = {
        "lr": lr,
        "lr_up": resized(lr, 160, 160),
        "hr": hr,
        "ref": canvas,
        "ref_down_up": canvas_down_up,
    }
    for key, array in expected.items():
        assert torch.equal(item[key], as_tensor(array)), key
    assert item["ref"][:, 140:, :].eq(-1).all() and item["ref"][:, :, 150:].eq(-1).all()


def test_matches_the_official_loader_tensors(shared_fixtures: Path, tmp_path: Path) -> None:
    fixture = torch.load(shared_fixtures / "official_pipeline.pt", weights_only=False)
    keys = {"lr": "LR", "lr_up": "LR_sr", "hr": "HR", "ref": "Ref", "ref_down_up": "Ref_sr"}
    cufed5 = tmp_path / "CUFED5"
    cufed5.mkdir()
    for stem, official in fixture["test"].items():
        Image.fromarray(official["hr_png"].numpy()).save(cufed5 / f"{stem}_0.png")
        for level in range(1, 6):
            Image.fromarray(official["ref_png"].numpy()).save(cufed5 / f"{stem}_{level}.png")
    test_set = CUFED5Dataset(cufed5, ref_level=1)
    assert [item.name for item in test_set.items] == [f"{stem}_0" for stem in fixture["test"]]
    for index, official in enumerate(fixture["test"].values()):
        item = test_set[index]
        for ours, theirs in keys.items():
            assert torch.equal(item[ours], official[theirs]), (index, ours)

    train = tmp_path / "train"
    for stem, official in fixture["train"].items():
        for folder, key in (("input", "input_png"), ("ref", "ref_png")):
            (train / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(official[key].numpy()).save(train / folder / f"{stem}.png")
    train_set = CUFEDTrainDataset(train, augment=False)
    assert any(official["ref_png"].shape[0] < 160 for official in fixture["train"].values())
    for index, official in enumerate(fixture["train"].values()):
        item = train_set[index]
        for ours, theirs in keys.items():
            assert torch.equal(item[ours], official[theirs]), (index, ours)
