"""Transferal perceptual loss against the official TPerceptualLoss values (l1/l2, with and without S)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ttsr_lightning.losses import TransferalPerceptualLoss


@pytest.fixture(scope="module")
def official_forward(shared_fixtures: Path) -> dict[str, Any]:
    return torch.load(shared_fixtures / "official_small_forward.pt", weights_only=False)


@pytest.mark.parametrize("distance", ["l1", "l2"])
@pytest.mark.parametrize("weight_by_soft_attention", [False, True])
def test_matches_official_tpl_loss(
    official_forward: dict[str, Any], distance: str, weight_by_soft_attention: bool
) -> None:
    outputs, intermediates = official_forward["outputs"], official_forward["intermediates"]
    loss = TransferalPerceptualLoss(distance, weight_by_soft_attention)(  # type: ignore[arg-type]
        (intermediates["sr_lv1"], intermediates["sr_lv2"], intermediates["sr_lv3"]),
        outputs["T_lv3"],
        outputs["T_lv2"],
        outputs["T_lv1"],
        outputs["S"],
    )
    expected = official_forward["losses"][f"tpl_{distance}_useS{int(weight_by_soft_attention)}"]
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


def _features(batch: int, height: int, width: int, offset: float) -> tuple[torch.Tensor, ...]:
    """(lv1, lv2, lv3) maps filled with ``offset``; lv3 is (height, width)."""
    return (
        torch.full((batch, 64, 4 * height, 4 * width), offset),
        torch.full((batch, 128, 2 * height, 2 * width), offset),
        torch.full((batch, 256, height, width), offset),
    )


def test_averages_the_three_levels_and_sends_gradients_to_both_sides() -> None:
    sr_lv1, sr_lv2, sr_lv3 = (level.requires_grad_() for level in _features(1, 3, 2, offset=0.0))
    t_lv1, t_lv2, t_lv3 = _features(1, 3, 2, offset=2.0)
    t_lv1.requires_grad_()
    loss = TransferalPerceptualLoss("l2")((sr_lv1, sr_lv2, sr_lv3), t_lv3, t_lv2, t_lv1)
    assert loss.item() == pytest.approx(4.0)  # every level's MSE is 2^2
    loss.backward()
    assert sr_lv3.grad is not None and t_lv1.grad is not None  # T is not detached (LTE learns through it)
    assert torch.allclose(t_lv1.grad, torch.full_like(t_lv1, 2 * 2.0 / t_lv1.numel() / 3))


def test_soft_attention_weighting_is_the_sigmoid_of_s_at_lv3() -> None:
    sr_features = _features(1, 2, 2, offset=0.0)
    t_lv1, t_lv2, t_lv3 = _features(1, 2, 2, offset=1.0)
    soft_attention = torch.zeros(1, 1, 2, 2)  # sigmoid(0) = 1/2 everywhere, at every level
    loss = TransferalPerceptualLoss("l1", weight_by_soft_attention=True)(
        sr_features, t_lv3, t_lv2, t_lv1, soft_attention
    )
    assert loss.item() == pytest.approx(0.5)


def test_soft_attention_weighting_needs_s() -> None:
    sr_features = _features(1, 2, 2, offset=0.0)
    with pytest.raises(ValueError, match="soft_attention"):
        TransferalPerceptualLoss(weight_by_soft_attention=True)(sr_features, *reversed(sr_features))


def test_rejects_unknown_distance() -> None:
    with pytest.raises(ValueError, match="distance"):
        TransferalPerceptualLoss("gram")  # type: ignore[arg-type]
