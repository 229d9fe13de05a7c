"""Learnable texture extractor (LTE): VGG19 up to relu3_1, initialised from ImageNet weights."""

from __future__ import annotations

import torch
from torch import nn

from ttsr_lightning.models.vgg19 import ImageNetNormalize, VGG19Features
from ttsr_lightning.pretrained import VggWeights

# VGG19 feature indices that end each texture level (exclusive): relu1_1, relu2_1, relu3_1.
_LEVEL_ENDS = (2, 7, 12)


class LTE(nn.Module):
    """Texture features at three scales, from ``vgg19().features[:12]`` (paper Sec. 3.1, Eq. (1)).

    Args:
        vgg_weights: initialisation of the VGG19 layers (``"imagenet"``, ``"auto"``, ``"random"`` or a
            file path; see :mod:`ttsr_lightning.pretrained`).
        requires_grad: False freezes the extractor at its initialisation (the "w/o LTE" ablation and
            the frozen copy used by the transferal perceptual loss).

    Submodules keep the official names and torchvision indices (``slice1.0``, ``slice2.2``,
    ``slice2.5``, ``slice3.7``, ``slice3.10``), so the official ``LTE.*`` keys load by name. The
    module is self-contained (a ``copy.deepcopy`` gives an independent extractor).

    ``forward(x)``: x (B, 3, H, W) in [-1, 1] -> ``(lv1, lv2, lv3)``:
    lv1 (B, 64, H, W) relu1_1, lv2 (B, 128, H/2, W/2) relu2_1, lv3 (B, 256, H/4, W/4) relu3_1,
    all >= 0 (post-ReLU; sizes floor-divided for H, W not multiples of 4).
    """

    def __init__(self, vgg_weights: VggWeights, requires_grad: bool = True) -> None:
        super().__init__()
        self.normalize = ImageNetNormalize()
        vgg_layers = VGG19Features(_LEVEL_ENDS[-1], vgg_weights).features
        self.slice1 = nn.Sequential()
        self.slice2 = nn.Sequential()
        self.slice3 = nn.Sequential()
        level_starts = (0, *_LEVEL_ENDS[:-1])
        for level_slice, start, end in zip(
            (self.slice1, self.slice2, self.slice3), level_starts, _LEVEL_ENDS, strict=True
        ):
            for index in range(start, end):
                level_slice.add_module(str(index), vgg_layers[index])
        self.requires_grad_(requires_grad)

    @property
    def channels(self) -> tuple[int, int, int]:
        """Channels of (lv1, lv2, lv3): the output channels of each level's last convolution."""
        widths = [
            [layer.out_channels for layer in level_slice if isinstance(layer, nn.Conv2d)][-1]
            for level_slice in (self.slice1, self.slice2, self.slice3)
        ]
        return widths[0], widths[1], widths[2]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lv1 = self.slice1(self.normalize(x))
        lv2 = self.slice2(lv1)
        lv3 = self.slice3(lv2)
        return lv1, lv2, lv3
