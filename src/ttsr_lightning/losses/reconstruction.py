"""Reconstruction loss: L1 between the SR output and the HR image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ttsr_lightning.losses.context import LossContext


class ReconstructionLoss(nn.Module):
    """Mean absolute error on [-1, 1] images, as the official ``nn.L1Loss`` (twice the [0, 1]-scale L1).

    ``forward(sr, hr)``: sr, hr (B, 3, H, W) in [-1, 1] -> scalar; ``term(context)``: the same on the
    context's sr and hr.
    """

    def term(self, context: LossContext) -> torch.Tensor:
        return self(context.sr, context.hr)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(sr, hr)
