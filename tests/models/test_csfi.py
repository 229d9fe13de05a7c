"""CSFI2, CSFI3 and MergeTail: shapes, value ranges, official parameter counts."""

from __future__ import annotations

import torch

from ttsr_lightning.models import CSFI2, CSFI3, MergeTail


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_csfi2_keeps_both_scales_non_negative() -> None:
    x1, x2 = CSFI2(8)(torch.randn(2, 8, 5, 6), torch.randn(2, 8, 10, 12))
    assert x1.shape == (2, 8, 5, 6) and x2.shape == (2, 8, 10, 12)
    assert x1.min() >= 0 and x2.min() >= 0  # merges end with a ReLU


def test_csfi3_keeps_three_scales_non_negative() -> None:
    outs = CSFI3(8)(torch.randn(1, 8, 3, 5), torch.randn(1, 8, 6, 10), torch.randn(1, 8, 12, 20))
    assert [tuple(o.shape) for o in outs] == [(1, 8, 3, 5), (1, 8, 6, 10), (1, 8, 12, 20)]
    assert all(o.min() >= 0 for o in outs)


def test_merge_tail_gives_a_clamped_image_at_the_finest_scale() -> None:
    sr = MergeTail(8)(torch.randn(2, 8, 3, 4), torch.randn(2, 8, 6, 8), torch.randn(2, 8, 12, 16) * 50)
    assert sr.shape == (2, 3, 12, 16)
    assert sr.min() >= -1 and sr.max() <= 1


def test_official_parameter_counts_at_64_channels() -> None:
    assert count(CSFI2(64)) == 188_672
    assert count(CSFI3(64)) == 492_160
    assert count(MergeTail(64)) == 137_539
