"""A run SIGKILLed mid-epoch (the whole process group: ranks and loader workers) and resumed from its
``last.ckpt`` ends bit-identical to an uninterrupted run. Real kills through ``helpers.sigkill``; the
in-process variant is ``test_train.py::test_killed_mid_epoch_run_resumes_exactly``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from helpers.sigkill import (
    ADAMW_COSINE,
    MULTISTEP_AT_EPOCH_1,
    TINY_CLI,
    assert_same_training_state,
    whole_and_resumed,
)

CASES = [
    # ~65 s each on 2 cores: the slow tier (the default suite resumes in-process, tests/test_train.py)
    pytest.param(
        1, "default", {"kill_after_batch": 6}, id="1worker-mid-epoch", marks=pytest.mark.slow
    ),  # batch 2 of epoch 2
    pytest.param(2, "default", {"kill_after_batch": 5}, id="2workers-mid-epoch", marks=pytest.mark.slow),
    pytest.param(2, "ddp_cpu", {"kill_after_batch": 6}, id="ddp-2workers-mid-epoch", marks=pytest.mark.slow),
    # after validation, before the epoch's LR step (Lightning then skips that epoch's end hooks)
    pytest.param(1, "default", {"kill_at_epoch_end": 1}, id="1worker-epoch-end", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("num_workers", "trainer", "kill"), CASES)
def test_sigkilled_run_resumes_exactly(
    tmp_path: Path, sample_data_dir: Path, num_workers: int, trainer: str, kill: dict[str, int]
) -> None:
    common = [
        *TINY_CLI,
        f"paths.data_dir={sample_data_dir}",
        f"data.train.num_workers={num_workers}",
        f"trainer={trainer}",
        MULTISTEP_AT_EPOCH_1,
    ]
    digest = "+callbacks.rank_digest={_target_:helpers.sigkill.RankDigest,folder:'%s'}"
    world_size = 2 if trainer == "ddp_cpu" else 1
    expected, resumed = whole_and_resumed(
        common, tmp_path, world_size, resume_overrides=[digest % (tmp_path / "ranks")], **kill
    )
    assert_same_training_state(expected, resumed)
    ranks = [
        torch.load(tmp_path / "ranks" / f"rank{rank}.pt", weights_only=True) for rank in range(world_size)
    ]
    for rank_state in ranks[1:]:  # the ranks of a DDP run hold the same weights
        assert all(torch.equal(value, ranks[0][name]) for name, value in rank_state.items())


@pytest.mark.slow  # ~65 s: two training subprocesses and a resumed one
def test_another_optimiser_and_schedule_by_overrides_alone_resume_exactly(
    tmp_path: Path, sample_data_dir: Path
) -> None:
    """The README's AdamW with weight decay and cosine schedule, overrides as printed: trained, SIGKILLed
    mid-epoch, resumed to the uninterrupted run's state, and recorded in run.json."""
    common = [*TINY_CLI, f"paths.data_dir={sample_data_dir}", *ADAMW_COSINE]
    expected, resumed = whole_and_resumed(common, tmp_path, kill_after_batch=6)
    assert_same_training_state(expected, resumed)
    [schedule] = resumed["lr_schedulers"]
    assert schedule["last_epoch"] == 2  # 3 epochs, the first a warm-up: stepped after each of the others
    cosine = (1 + math.cos(math.pi * schedule["last_epoch"] / schedule["T_max"])) / 2
    generator_groups = resumed["optimizer_states"][0]["param_groups"]
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in generator_groups] == [
        ("generator", pytest.approx(5e-4 * cosine), 0.01),
        ("lte", pytest.approx(5e-5 * cosine), 0.01),
    ]
    recorded = json.loads((tmp_path / "killed" / "run.json").read_text())["optim"]["generator"]
    assert recorded["optimizer"]["_target_"] == "torch.optim.AdamW"
    assert recorded["scheduler"]["_target_"] == "torch.optim.lr_scheduler.CosineAnnealingLR"
