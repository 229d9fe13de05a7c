"""Loss terms outside src/: a run adds each by a Hydra override alone (tests/test_loss_terms.py)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ttsr_lightning.losses import LossContext


class EdgeLoss(nn.Module):
    """L1 between the horizontal and vertical finite differences of sr and hr; counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def term(self, context: LossContext) -> torch.Tensor:
        self.calls += 1
        sr, hr = context.sr, context.hr
        horizontal = F.l1_loss(sr.diff(dim=-1), hr.diff(dim=-1))
        vertical = F.l1_loss(sr.diff(dim=-2), hr.diff(dim=-2))
        return horizontal + vertical


class FrozenFeatureLoss(nn.Module):
    """L1 between fixed random conv features of sr and hr: weights that never train, declared with
    ``frozen_weights`` so run checkpoints leave them out; counts its calls."""

    frozen_weights: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=3, padding=1).requires_grad_(False)
        self.calls = 0

    def term(self, context: LossContext) -> torch.Tensor:
        self.calls += 1
        return F.l1_loss(self.conv(context.sr), self.conv(context.hr))
