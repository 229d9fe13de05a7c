"""Every speed option of the README runs a fit (with validation) and the test on all nine CUFED5 sets of
the sample, references given as lists (``all5``) and stitched included; the options that change only
memory layout or kernel choice give the default run's numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from helpers.config import compose_config
from ttsr_lightning.train import train

SETS = ("L1", "L2", "L3", "L4", "L5", "LR", "stitched", "stitched_masa", "all5")
RUN = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "optim.warmup_epochs=0",  # every loss term, the critic included, runs in the one batch
    "callbacks.image_panels.max_images=0",
]
# the options that change memory layout or kernels, not the arithmetic: the default run's numbers, to
# float rounding (a 1e-3 dB step on a tiny random-init model would be a different computation)
SAME_NUMBERS = {
    "channels_last": "system.channels_last=true",
    "batched_extractor": "model.generator.batched_extractor=true",
    "benchmark": "trainer.benchmark=true",
    "fused_adam": "optim.fused=true",
}
# bf16 convolutions on a CPU take minutes here; compile spends its time compiling
OTHER = {
    "bf16_mixed": pytest.param("trainer.precision=bf16-mixed", id="bf16_mixed", marks=pytest.mark.slow),
    "compile": pytest.param("system.compile=true", id="compile", marks=pytest.mark.slow),
}


def _test_metrics(tmp_path: Path, data_dir: Path, overrides: list[str]) -> dict[str, float]:
    metrics = train(compose_config(tmp_path, data_dir, [*RUN, *overrides]))
    assert math.isfinite(metrics["val/psnr"])
    for level in SETS:
        for measure in ("psnr", "ssim"):
            assert math.isfinite(metrics[f"test/CUFED5_{level}/{measure}"]), (level, measure)
    return {level: metrics[f"test/CUFED5_{level}/psnr"] for level in SETS}


@pytest.fixture(scope="module")
def default_psnr(tmp_path_factory: pytest.TempPathFactory, sample_data_dir: Path) -> dict[str, float]:
    return _test_metrics(tmp_path_factory.mktemp("default"), sample_data_dir, [])


@pytest.mark.parametrize(
    "override",
    # ~40 s each on 2 cores: the slow tier
    [
        pytest.param(value, id=key, marks=pytest.mark.slow)  # ~40 s each on 2 cores
        for key, value in SAME_NUMBERS.items()
    ],
)
def test_layout_and_kernel_options_give_the_default_numbers_on_every_set(
    tmp_path: Path, sample_data_dir: Path, default_psnr: dict[str, float], override: str
) -> None:
    psnr = _test_metrics(tmp_path, sample_data_dir, [override])
    for level in SETS:
        assert psnr[level] == pytest.approx(default_psnr[level], abs=1e-3), level


@pytest.mark.parametrize("override", list(OTHER.values()))
def test_precision_and_compile_run_on_every_set(tmp_path: Path, sample_data_dir: Path, override: str) -> None:
    _test_metrics(tmp_path, sample_data_dir, [override])
