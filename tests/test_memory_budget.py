"""max_memory: parsing, the auto budget, and infer / evaluate within a budget (tiled when needed)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.config import TINY_GENERATOR, compose_evaluate, compose_infer
from helpers.dataset_trees import astronaut_batch, photo_crop
from ttsr_lightning.budgeted import (
    AUTO_FRACTION,
    available_memory,
    memory_budget,
    parse_memory_setting,
    plan_forward,
)
from ttsr_lightning.checkpoints.generator_file import save_generator
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.evaluate import evaluate
from ttsr_lightning.evaluation_module import EvaluationModule
from ttsr_lightning.infer import infer
from ttsr_lightning.models import TTSRGenerator


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny generator (seed 0) as a generator file."""
    torch.manual_seed(0)
    save_generator(TTSRGenerator(**TINY_GENERATOR), path := tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")
    return path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("auto", "auto"),
        (None, None),
        ("null", None),
        ("4GiB", 4 * 2**30),
        ("4 GiB", 4 * 2**30),
        ("1.5G", int(1.5 * 2**30)),
        ("512MB", 512 * 10**6),
        ("300mib", 300 * 2**20),
        (2**30, 2**30),
        ("1073741824", 2**30),
    ],
)
def test_parse_memory_setting(value: object, expected: object) -> None:
    assert parse_memory_setting(value) == expected


@pytest.mark.parametrize("value", ["lots", "4 GiBs", "-1GiB", "3e9", True, "GiB", ""])
def test_parse_memory_setting_refuses_by_key(value: object) -> None:
    with pytest.raises(ValueError, match=r"max_memory: expected auto, null or a size such as 4GiB"):
        parse_memory_setting(value)
    with pytest.raises(ValueError, match=r"^evaluate.max_memory: expected"):
        parse_memory_setting(value, "evaluate.max_memory")


def test_a_budget_under_one_mebibyte_is_refused() -> None:
    with pytest.raises(ValueError, match="max_memory: '1000' is 1000 bytes; a budget needs at least 1 MiB"):
        parse_memory_setting("1000")


def test_auto_is_a_share_of_the_free_memory() -> None:
    cpu = torch.device("cpu")
    free = available_memory(cpu)
    assert 0 < memory_budget("auto", cpu) <= AUTO_FRACTION["cpu"] * free * 1.1  # other processes move it
    assert memory_budget("auto", cpu, processes=4) < memory_budget("auto", cpu)
    assert memory_budget(2**30, cpu) == 2**30 and memory_budget(None, cpu) is None


# ------------------------------------------------------------------------------------------ infer
def tiling_budget(generator: TTSRGenerator, lr_size: tuple[int, int], ref_size: tuple[int, int]) -> int:
    """A budget under which the main network runs in tiles (the largest of a 3/4 ladder)."""
    budget = plan_forward(generator, lr_size, [ref_size], None).estimated_bytes
    while not plan_forward(generator, lr_size, [ref_size], budget).tiled:
        budget = budget * 3 // 4
    return budget


def test_infer_within_a_budget_tiles_and_logs_the_tiling(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An LR of 160x36 px with a 60x40 reference: a budget under the whole image's runs tiles whose SR
    differs from the untiled one by at most one 8-bit level."""
    lr, ref = tmp_path / "lr.png", tmp_path / "ref.png"
    photo_crop("astronaut", 200, 100, 36, 160).save(lr)
    photo_crop("coffee", 50, 50, 40, 60).save(ref)
    generator = TTSRGenerator(**TINY_GENERATOR)
    budget = tiling_budget(generator, (36, 160), (40, 60))

    common = [f"lr={lr}", f"ref={ref}", f"ckpt={ckpt}"]
    with caplog.at_level(logging.INFO, logger="ttsr_lightning.infer"):
        written = infer(compose_infer([*common, f"out={tmp_path / 'tiled.png'}", f"max_memory={budget}"]))
    assert written == [tmp_path / "tiled.png"]
    assert "lr.png: LR 160x36:" in caplog.text and "main-network tiles of" in caplog.text
    infer(compose_infer([*common, f"out={tmp_path / 'whole.png'}", "max_memory=null"]))
    tiled = np.asarray(Image.open(tmp_path / "tiled.png")).astype(int)
    whole = np.asarray(Image.open(tmp_path / "whole.png")).astype(int)
    assert tiled.shape == (144, 640, 3) and np.abs(tiled - whole).max() <= 1


def test_infer_auto_budget_gives_the_untiled_image(
    tmp_path: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lr, ref = tmp_path / "lr.png", tmp_path / "ref.png"
    photo_crop("astronaut", 100, 100, 17, 23).save(lr)
    photo_crop("astronaut", 60, 80, 50, 70).save(ref)
    common = [f"lr={lr}", f"ref={ref}", f"ckpt={ckpt}"]
    with caplog.at_level(logging.INFO, logger="ttsr_lightning.infer"):
        infer(compose_infer([*common, f"out={tmp_path / 'auto.png'}"]))
    assert "max_memory=auto: " in caplog.text and "LR 23x17: untiled" in caplog.text
    infer(compose_infer([*common, f"out={tmp_path / 'none.png'}", "max_memory=null"]))
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "auto.png")), np.asarray(Image.open(tmp_path / "none.png"))
    )


# ------------------------------------------------------------------------------------------ evaluate
def test_evaluation_module_within_a_budget() -> None:
    """The budgeted forward: untiled when the image fits (the plain forward's SR, bit for bit), tiles
    under a smaller budget (the first plan of each kind logged)."""
    torch.manual_seed(0)
    generator = TTSRGenerator(**TINY_GENERATOR).eval()
    batch = astronaut_batch()
    with torch.no_grad():
        plain = EvaluationModule(generator)(batch)
        untiled = EvaluationModule(generator, max_memory="auto")(batch)
        tiled = EvaluationModule(generator, max_memory=tiling_budget(generator, (36, 128), (40, 60)))(batch)
    assert torch.equal(untiled.sr, plain.sr) and untiled.t_lv1 is None
    assert torch.equal(tiled.hard_index, plain.hard_index)
    assert (tiled.sr - plain.sr).abs().max() < 1e-3


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<data_dir>/CUFED/test/CUFED5``: two groups, HR 66x50 (cropped to 64x48)."""
    data_dir = tmp_path_factory.mktemp("data")
    root = data_dir / "CUFED" / "test" / "CUFED5"
    root.mkdir(parents=True)
    for group, name in (("000", "astronaut"), ("001", "coffee")):
        photo_crop(name, 150, 200, 50, 66).save(root / f"{group}_0.png")
        for level in range(1, 6):
            photo_crop(name, 130 + 10 * level, 180 + 8 * level, 34 + 4 * level, 50 - 3 * level).save(
                root / f"{group}_{level}.png"
            )
    return data_dir


def test_evaluate_with_max_memory_writes_its_results(
    tmp_path: Path, data_dir: Path, ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results = {}
    for setting in ("64MiB", "null"):
        output_dir = tmp_path / setting
        overrides = [f"ckpt={ckpt}", "sets=[CUFED5_L1]", f"max_memory={setting}"]
        with caplog.at_level(logging.INFO, logger="ttsr_lightning"):
            evaluate(compose_evaluate(output_dir, data_dir, overrides))
        assert (output_dir / "results.md").is_file() and (output_dir / "test_per_image.csv").is_file()
        results[setting] = (output_dir / "test_per_image.csv").read_text()
    plans = [
        record.getMessage() for record in caplog.records if record.getMessage().startswith("max_memory=")
    ]
    # the budget was planned (only with a setting), and these images fit in it whole
    assert plans and all(
        plan.startswith(f"max_memory={64 * 2**20}: LR ") and "untiled" in plan for plan in plans
    )
    assert results["64MiB"] == results["null"]  # untiled: the same SR, the same numbers
    with pytest.raises(ConfigError, match="max_memory: expected auto, null or a size"):
        evaluate(
            compose_evaluate(
                tmp_path / "bad", data_dir, [f"ckpt={ckpt}", "sets=[CUFED5_L1]", "max_memory=plenty"]
            )
        )
