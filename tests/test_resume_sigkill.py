"""A run SIGKILLed mid-epoch (the whole process group: ranks and loader workers) and resumed from its
``last.ckpt`` ends bit-identical to an uninterrupted run. Real kills through ``helpers.sigkill``; the
in-process variant is ``test_train.py::test_killed_mid_epoch_run_resumes_exactly``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.sigkill import TINY_CLI, assert_same_training_state, whole_and_resumed

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
        "optim.lr_milestones=[1]",
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
