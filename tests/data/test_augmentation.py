"""The official flips and rotations: same arrays as numpy's fliplr/flipud/rot90, groups kept aligned,
draw order as the official code, reproducible from (seed, epoch, index)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ttsr_lightning.data import CUFEDTrainDataset
from ttsr_lightning.data.augmentation import Augmentation, apply_augmentation, draw_augmentation
from ttsr_lightning.data.seeding import augmentation_generator

ALL_AUGMENTATIONS = [
    Augmentation(lr_h, ref_h, lr_v, ref_v, lr_k, ref_k)
    for lr_h, ref_h, lr_v, ref_v in itertools.product((False, True), repeat=4)
    for lr_k, ref_k in ((0, 3), (1, 2), (2, 1), (3, 0))
]


def official(array_hwc: np.ndarray, hflip: bool, vflip: bool, k: int) -> np.ndarray:
    """What the official RandomFlip + RandomRotate do to one (H, W, C) array."""
    if hflip:
        array_hwc = np.fliplr(array_hwc)
    if vflip:
        array_hwc = np.flipud(array_hwc)
    return np.rot90(array_hwc, k).copy()


def chw(array_hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array_hwc.transpose(2, 0, 1).copy())


def pil_downscale(image: torch.Tensor) -> torch.Tensor:
    """PIL bicubic /4 of a (3, H, W) tensor in [-1, 1] holding whole 8-bit levels."""
    array = ((image + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    small = Image.fromarray(array).resize(
        (array.shape[1] // 4, array.shape[0] // 4), Image.Resampling.BICUBIC
    )
    return torch.from_numpy(np.asarray(small, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)


def hwc(sample: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {key: value.permute(1, 2, 0).numpy() for key, value in sample.items()}


def tensors(sample: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: chw(value) for key, value in sample.items()}


@pytest.fixture(scope="module")
def plain_sample(shared_cufed_train: Path) -> dict[str, torch.Tensor]:
    return CUFEDTrainDataset(shared_cufed_train, augment=False)[2]  # the one with a zero-padded reference


@pytest.mark.parametrize("augmentation", ALL_AUGMENTATIONS)
def test_each_group_is_transformed_like_numpy_fliplr_flipud_rot90(
    plain_sample: dict[str, torch.Tensor], augmentation: Augmentation
) -> None:
    out = tensors(apply_augmentation(hwc(plain_sample), augmentation))
    a = augmentation
    for key, (hflip, vflip, k) in {
        "lr": (a.lr_hflip, a.lr_vflip, a.lr_quarter_turns),
        "lr_up": (a.lr_hflip, a.lr_vflip, a.lr_quarter_turns),
        "hr": (a.lr_hflip, a.lr_vflip, a.lr_quarter_turns),
        "ref": (a.ref_hflip, a.ref_vflip, a.ref_quarter_turns),
        "ref_down_up": (a.ref_hflip, a.ref_vflip, a.ref_quarter_turns),
    }.items():
        expected = official(plain_sample[key].permute(1, 2, 0).numpy(), hflip, vflip, k)
        assert torch.equal(out[key], chw(expected)), key


@pytest.mark.parametrize("augmentation", ALL_AUGMENTATIONS[::4])
def test_lr_stays_aligned_with_the_augmented_hr(
    plain_sample: dict[str, torch.Tensor], augmentation: Augmentation
) -> None:
    out = tensors(apply_augmentation(hwc(plain_sample), augmentation))
    # PIL resizes rows then columns with 8-bit rounding in between, so a quarter turn can move an LR
    # pixel by 2 levels (verified); flips and half turns commute exactly.
    tolerance = 2 / 127.5 + 1e-6 if augmentation.lr_quarter_turns % 2 else 0.0
    assert (out["lr"] - pil_downscale(out["hr"])).abs().max() <= tolerance
    # A misaligned LR (transformed once more) is far off: this check can fail.
    misaligned = torch.rot90(out["lr"].flip(-1), 1, dims=(-2, -1))
    assert (misaligned - pil_downscale(out["hr"])).abs().max() > 0.5


def test_reference_group_stays_aligned_including_its_black_padding(
    plain_sample: dict[str, torch.Tensor],
) -> None:
    augmentation = Augmentation(False, True, False, True, 0, 1)  # ref: both flips then a quarter turn
    out = tensors(apply_augmentation(hwc(plain_sample), augmentation))
    black = out["ref"].eq(-1).all(0)
    assert torch.equal(black, out["ref_down_up"].eq(-1).all(0))
    # The 140x150 reference sits top-left (black: 20 rows below, 10 columns right). Both flips move the
    # black to the top 20 rows and left 10 columns; a counter-clockwise quarter turn takes the top rows
    # to the left columns and the left columns to the bottom rows.
    assert black[:, :20].all() and black[150:, :].all() and not black[:150, 20:].any()


def test_draw_order_is_four_coins_then_two_quarter_turn_counts() -> None:
    class Scripted:
        def __init__(self) -> None:
            self.draws = iter([1, 0, 0, 1, 2, 3])
            self.calls: list[tuple[int, int]] = []

        def integers(self, low: int, high: int) -> int:
            self.calls.append((low, high))
            return next(self.draws)

    rng = Scripted()
    assert draw_augmentation(rng) == Augmentation(True, False, False, True, 2, 3)  # type: ignore[arg-type]
    assert rng.calls == [(0, 2)] * 4 + [(0, 4)] * 2


def test_lr_and_reference_groups_are_drawn_independently() -> None:
    draws = [draw_augmentation(augmentation_generator(0, 0, index)) for index in range(400)]
    lr_states = {(d.lr_hflip, d.lr_vflip, d.lr_quarter_turns) for d in draws}
    pairs = {(d.lr_quarter_turns, d.ref_quarter_turns) for d in draws}
    assert len(lr_states) == 16 and len(pairs) == 16


def test_dataset_draws_from_seed_epoch_and_index(cufed_train: Path) -> None:
    augmented = CUFEDTrainDataset(cufed_train, seed=7)
    plain = CUFEDTrainDataset(cufed_train, augment=False)
    for epoch, index in ((0, 0), (3, 1), (5, 3)):
        draw = draw_augmentation(augmentation_generator(7, epoch, index))
        expected = tensors(apply_augmentation(hwc(plain[index]), draw))
        item = augmented[(epoch, index)]
        assert all(torch.equal(item[key], expected[key]) for key in expected)
        again = CUFEDTrainDataset(cufed_train, seed=7)[(epoch, index)]
        assert all(torch.equal(item[key], again[key]) for key in item)
    assert torch.equal(augmented[1]["hr"], augmented[(0, 1)]["hr"])  # a plain index means epoch 0
    epochs = [augmented[(epoch, 0)]["hr"] for epoch in range(6)]
    assert any(not torch.equal(epochs[0], other) for other in epochs[1:])
