"""Every CPU speed option of the README trains a fit (with validation) and tests on all nine CUFED5 sets of
the sample, references given as lists (``all5``) and stitched included; each option is in effect in the
training step (seen from inside it: helpers/speed_options.py) and gives the plain fp32 run's numbers,
within the rounding that option allows. ``trainer.benchmark`` (cuDNN's algorithm search) does nothing on
a CPU; it is tested on a GPU, in tests/gpu/test_gpu.py, with the other GPU-only options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import open_dict

from helpers.config import compose_config
from helpers.speed_options import OptionsInEffect
from ttsr_lightning.train import train

SETS = ("L1", "L2", "L3", "L4", "L5", "LR", "stitched", "stitched_masa", "all5")
# debug=tiny, one batch: every loss term, the critic included, runs in it; the paper's output layer (no
# bicubic skip, whose zero start would make every run's images the bicubic ones, whatever the arithmetic)
RUN = [
    "model.generator.bicubic_residual=false",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "optim.warmup_epochs=0",
    "callbacks.image_panels.max_images=0",
]
# Tolerances, absolute, for the training step's loss terms, PSNR in dB and SSIM. fp32 rounding: another
# summation order in a layout's, a fused or a compiled kernel's arithmetic, which one Adam step (an update
# of ~lr where a gradient is ~0) carries into the images; measured on 2 CPU cores: batched_extractor and
# fused Adam exactly 0, channels_last 3e-9 / 2e-6 dB / 3e-7. A 1e-3 dB step on this random-init model
# would be a different computation.
FP32 = {"loss": 1e-4, "psnr": 1e-3, "ssim": 1e-5}
# A compiled step's kernels fuse and reorder whole reductions, not one layout's sums: Adam's first update
# (~lr times the sign of each gradient) turns those differences into whole-step changes on the weights
# whose gradient is near 0. Measured on 2 CPU cores: within FP32 for the losses, validation and PSNR of
# L1..L5 and LR, but SSIM 3.3e-5 on CUFED5_LR; bounded 3x and 10x above what was measured.
COMPILED = {"loss": 1e-4, "psnr": 1e-2, "ssim": 1e-4}
# bf16 rounds the convolutions' products to 8 mantissa bits (relative 4e-3), in the training step and in
# validation and test; measured: 2e-4 (the adversarial term) / 5e-3 dB / 4e-4
BF16 = {"loss": 1e-3, "psnr": 0.05, "ssim": 1e-3}


def _run(tmp_path: Path, data_dir: Path, overrides: list[str]) -> tuple[dict[str, float], dict[str, Any]]:
    """The run's training loss terms, validation PSNR and test PSNR / SSIM of every set, and what its
    options did in the training step."""
    cfg = compose_config(tmp_path, data_dir, [*RUN, *overrides])
    with open_dict(cfg):
        cfg.callbacks.options_in_effect = {"_target_": "helpers.speed_options.OptionsInEffect"}
    OptionsInEffect.seen = {}
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    metrics = train(cfg)
    numbers = {key: value for key, value in metrics.items() if key.startswith("train/loss")}
    numbers["val/psnr"] = metrics["val/psnr"]
    for level in SETS:
        for measure in ("psnr", "ssim"):
            numbers[f"test/CUFED5_{level}/{measure}"] = metrics[f"test/CUFED5_{level}/{measure}"]
    return numbers, dict(OptionsInEffect.seen)


def _assert_same_numbers(
    numbers: dict[str, float], plain: dict[str, float], tolerance: dict[str, float]
) -> None:
    assert numbers.keys() == plain.keys() and "train/loss_adversarial" in numbers
    for key, value in numbers.items():
        kind = "loss" if key.startswith("train/") else key.rsplit("/", 1)[1]
        assert value == pytest.approx(plain[key], abs=tolerance[kind]), (key, value, plain[key])


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, sample_data_dir: Path) -> dict[str, float]:
    """The plain fp32 run's numbers; its step: fp32, contiguous, three extractor passes, no fusion, eager."""
    numbers, seen = _run(tmp_path_factory.mktemp("plain"), sample_data_dir, [])
    assert seen["conv_dtype"] == torch.float32 and not seen["conv_channels_last"]
    assert seen["extractor_batches"] == [2, 2, 2]  # lr_up, ref_down_up, ref: batches of 2
    assert not any(seen["fused"]) and seen["compiled_graphs"] == 0
    return numbers


@pytest.mark.slow  # 1.5-2.5 min on 2 busy cores, as each run below
def test_channels_last_runs_the_convolutions_channels_last_with_the_fp32_numbers(
    tmp_path: Path, sample_data_dir: Path, plain: dict[str, float]
) -> None:
    numbers, seen = _run(tmp_path, sample_data_dir, ["system.channels_last=true"])
    assert seen["conv_channels_last"] and seen["conv_dtype"] == torch.float32
    _assert_same_numbers(numbers, plain, FP32)


@pytest.mark.slow
def test_batched_extractor_runs_the_lte_once_with_the_fp32_numbers(
    tmp_path: Path, sample_data_dir: Path, plain: dict[str, float]
) -> None:
    numbers, seen = _run(tmp_path, sample_data_dir, ["model.generator.batched_extractor=true"])
    assert seen["extractor_batches"] == [6]  # the three images of each of the 2 pairs, stacked
    _assert_same_numbers(numbers, plain, FP32)


@pytest.mark.slow
def test_fused_adam_steps_every_group_fused_with_the_fp32_numbers(
    tmp_path: Path, sample_data_dir: Path, plain: dict[str, float]
) -> None:
    numbers, seen = _run(tmp_path, sample_data_dir, ["optim.fused=true"])
    assert seen["fused"] and all(seen["fused"])
    _assert_same_numbers(numbers, plain, FP32)


@pytest.mark.slow  # inductor's C++ code generation: minutes on 2 cores
def test_compile_runs_a_compiled_step_with_the_plain_numbers_within_its_reordering(
    tmp_path: Path, sample_data_dir: Path, plain: dict[str, float]
) -> None:
    numbers, seen = _run(tmp_path, sample_data_dir, ["system.compile=true"])
    assert seen["compiled_graphs"] > 0
    _assert_same_numbers(numbers, plain, COMPILED)


@pytest.mark.slow  # bf16 convolutions on a CPU: minutes on 2 cores
def test_bf16_mixed_runs_the_convolutions_in_bf16_within_bf16_rounding_of_the_fp32_numbers(
    tmp_path: Path, sample_data_dir: Path, plain: dict[str, float]
) -> None:
    numbers, seen = _run(tmp_path, sample_data_dir, ["trainer.precision=bf16-mixed"])
    assert seen["conv_dtype"] == torch.bfloat16
    _assert_same_numbers(numbers, plain, BF16)
