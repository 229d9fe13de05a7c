"""Cross-scale feature integration (paper Sec. 3.3): CSFI2, CSFI3 and the merging tail.

Branches exchange features at every stage: upward by bicubic interpolation + 1x1 conv + ReLU,
downward by stride-2 3x3 convs + ReLU; each branch then merges its own features with the resampled
others (concatenated in the official order) by a 3x3 conv + ReLU. Branch 1 is the LR scale (lv3),
branch 2 twice that (lv2), branch 3 four times (lv1). All channel counts are ``n_feats``.

The branches are merged one after the other and each resampled map is dropped as soon as it is
concatenated: without autograd (with in-place ReLUs, see :mod:`~ttsr_lightning.models.blocks`) the
exchange at the finest scale keeps the input, the concatenation and its convolution alive, not every
resampled map as well. Same values as computing them all first.
"""

from __future__ import annotations

import torch
from torch import nn

from ttsr_lightning.models.blocks import bicubic_upsample, conv1x1, conv3x3, fresh_relu


class CSFI2(nn.Module):
    """Two-branch exchange. ``forward(x1, x2)``: (B, n, h, w), (B, n, 2h, 2w) -> the same shapes."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.conv12 = conv1x1(n_feats, n_feats)
        self.conv21 = conv3x3(n_feats, n_feats, stride=2)
        self.conv_merge1 = conv3x3(2 * n_feats, n_feats)
        self.conv_merge2 = conv3x3(2 * n_feats, n_feats)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Branch by branch, each resampled map dropped once concatenated (see module docstring).
        x21 = fresh_relu(self.conv21(x2))
        merged1 = fresh_relu(self.conv_merge1(torch.cat((x1, x21), dim=1)))
        del x21
        x12 = fresh_relu(self.conv12(bicubic_upsample(x1, 2)))
        stacked = torch.cat((x2, x12), dim=1)
        del x12
        merged2 = fresh_relu(self.conv_merge2(stacked))
        return merged1, merged2


class CSFI3(nn.Module):
    """Three-branch exchange.

    ``forward(x1, x2, x3)``: (B, n, h, w), (B, n, 2h, 2w), (B, n, 4h, 4w) -> the same shapes.
    """

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.conv12 = conv1x1(n_feats, n_feats)
        self.conv13 = conv1x1(n_feats, n_feats)
        self.conv21 = conv3x3(n_feats, n_feats, stride=2)
        self.conv23 = conv1x1(n_feats, n_feats)
        self.conv31_1 = conv3x3(n_feats, n_feats, stride=2)
        self.conv31_2 = conv3x3(n_feats, n_feats, stride=2)
        self.conv32 = conv3x3(n_feats, n_feats, stride=2)
        self.conv_merge1 = conv3x3(3 * n_feats, n_feats)
        self.conv_merge2 = conv3x3(3 * n_feats, n_feats)
        self.conv_merge3 = conv3x3(3 * n_feats, n_feats)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Branch by branch, each resampled map dropped once concatenated (see module docstring).
        x21 = fresh_relu(self.conv21(x2))
        x31 = fresh_relu(self.conv31_2(fresh_relu(self.conv31_1(x3))))
        merged1 = fresh_relu(self.conv_merge1(torch.cat((x1, x21, x31), dim=1)))
        del x21, x31
        x12 = fresh_relu(self.conv12(bicubic_upsample(x1, 2)))
        x32 = fresh_relu(self.conv32(x3))
        merged2 = fresh_relu(self.conv_merge2(torch.cat((x2, x12, x32), dim=1)))
        del x12, x32
        x13 = fresh_relu(self.conv13(bicubic_upsample(x1, 4)))
        x23 = fresh_relu(self.conv23(bicubic_upsample(x2, 2)))
        stacked = torch.cat((x3, x13, x23), dim=1)
        del x13, x23
        merged3 = fresh_relu(self.conv_merge3(stacked))
        return merged1, merged2, merged3


class MergeTail(nn.Module):
    """Final merge of the three branches at the HR scale, then features to RGB.

    The two coarse branches are upsampled (bicubic + 1x1 conv + ReLU) and merged with branch 3 by a
    3x3 conv + ReLU; then conv3x3 n -> n/2 and conv1x1 n/2 -> 3 with no activation between (as
    official), and a hard clamp (no global skip from ``lr_up``).
    ``forward(x1, x2, x3)``: (B, n, h, w), (B, n, 2h, 2w), (B, n, 4h, 4w) -> (B, 3, 4h, 4w) in [-1, 1].
    """

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.conv13 = conv1x1(n_feats, n_feats)
        self.conv23 = conv1x1(n_feats, n_feats)
        self.conv_merge = conv3x3(3 * n_feats, n_feats)
        self.conv_tail1 = conv3x3(n_feats, n_feats // 2)
        self.conv_tail2 = conv1x1(n_feats // 2, 3)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor) -> torch.Tensor:
        x13 = fresh_relu(self.conv13(bicubic_upsample(x1, 4)))
        x23 = fresh_relu(self.conv23(bicubic_upsample(x2, 2)))
        stacked = torch.cat((x3, x13, x23), dim=1)
        del x13, x23
        merged = fresh_relu(self.conv_merge(stacked))
        del stacked
        return torch.clamp(self.conv_tail2(self.conv_tail1(merged)), -1.0, 1.0)
