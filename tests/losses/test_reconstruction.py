"""Reconstruction loss against the official code's value and a hand-computed L1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ttsr_lightning.losses import ReconstructionLoss


def test_matches_official_rec_loss(shared_fixtures: Path) -> None:
    forward = torch.load(shared_fixtures / "official_small_forward.pt", weights_only=False)
    loss = ReconstructionLoss()(forward["outputs"]["sr"], forward["losses"]["hr"])
    assert loss.item() == pytest.approx(forward["losses"]["rec_l1"].item(), abs=1e-6)


def test_is_the_mean_absolute_error_on_the_minus_one_to_one_scale() -> None:
    hr = torch.zeros(2, 3, 4, 4)
    sr = hr.clone()
    sr[0] = 0.5  # half of the elements are off by 0.5
    assert ReconstructionLoss()(sr, hr).item() == pytest.approx(0.25)
