"""Reconstruction loss: L1 between the SR output and the HR image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReconstructionLoss(nn.Module):
    """Mean absolute error on [-1, 1] images, as the official ``nn.L1Loss`` (twice the [0, 1]-scale L1).

    ``forward(sr, hr)``: sr, hr (B, 3, H, W) in [-1, 1] -> scalar.
    """

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(sr, hr)
