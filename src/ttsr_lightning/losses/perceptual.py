"""Perceptual loss: MSE between VGG19 relu5_1 features of the SR and HR images."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ttsr_lightning.losses.context import LossContext
from ttsr_lightning.models.vgg19 import ImageNetNormalize, VGG19Features
from ttsr_lightning.pretrained import VggWeights

# torchvision vgg19().features[:30] ends at relu5_1 (512 channels, 1/16 resolution), the official layer.
_RELU5_1_LAYERS = 30


class PerceptualLoss(nn.Module):
    """Frozen VGG19 up to relu5_1; MSE (mean) between the SR and HR feature maps.

    Args:
        vgg_weights: VGG19 initialisation (``"imagenet"``, ``"auto"``, ``"random"`` or a file path; see
            :mod:`ttsr_lightning.pretrained`). The loss is meaningless with random weights; those are
            for tests and offline smoke runs.

    ``forward(sr, hr=None, hr_features=None)``: sr (B, 3, H, W) in [-1, 1]; exactly one of
    hr (B, 3, H, W) in [-1, 1] or ``hr_features`` (from :meth:`target_features`, so a caller can reuse
    them across steps) -> scalar. Gradients reach ``sr`` only: the VGG is frozen and the HR side is
    computed without a graph. ``term(context)``: ``forward`` on the context's sr and hr.
    """

    # the VGG19 never trains and is rebuilt from vgg_weights: run checkpoints leave it out
    frozen_weights: ClassVar[bool] = True

    def __init__(self, vgg_weights: VggWeights) -> None:
        super().__init__()
        self.normalize = ImageNetNormalize()
        self.vgg = VGG19Features(_RELU5_1_LAYERS, vgg_weights)
        self.vgg.requires_grad_(False)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [-1, 1] -> relu5_1 features (B, 512, H/16, W/16), >= 0."""
        return self.vgg(self.normalize(image))

    @torch.no_grad()
    def target_features(self, hr: torch.Tensor) -> torch.Tensor:
        """The HR side of the loss: :meth:`features` without a graph."""
        return self.features(hr)

    def forward(
        self, sr: torch.Tensor, hr: torch.Tensor | None = None, hr_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        if hr_features is None:
            if hr is None:
                raise ValueError("PerceptualLoss.forward needs hr or hr_features, got neither")
            hr_features = self.target_features(hr)
        elif hr is not None:
            raise ValueError("PerceptualLoss.forward takes hr or hr_features, not both")
        return F.mse_loss(self.features(sr), hr_features)

    def term(self, context: LossContext) -> torch.Tensor:
        return self(context.sr, context.hr)
