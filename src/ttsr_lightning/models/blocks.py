"""Building blocks of the main network: convolutions, residual blocks, shallow feature extraction, image tail.

No normalisation layers anywhere (as the official code); every convolution has a bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def bicubic_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling inside the network, as official: ``F.interpolate`` (a = -0.75, no antialias).

    Not PIL's bicubic (a = -0.5) used for the data: the two differ.
    """
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1 (stride 2 halves the size)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    """1x1 convolution (channel mixing only)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1)


class ResBlock(nn.Module):
    """EDSR-style residual block without BN: ``x + conv(relu(conv(x)))``; (B, n, H, W) -> same."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(n_feats, n_feats)
        self.conv2 = conv3x3(n_feats, n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def res_blocks(num_blocks: int, n_feats: int) -> nn.Sequential:
    """``num_blocks`` chained ResBlocks (keys ``<i>.conv1.*`` as the official ModuleLists); 0 = identity."""
    return nn.Sequential(*(ResBlock(n_feats) for _ in range(num_blocks)))


class SFE(nn.Module):
    """Shallow feature extraction on the LR image: head conv + ReLU, residual blocks, tail conv, long skip.

    ``forward(lr)``: (B, 3, h, w) in [-1, 1] -> (B, n_feats, h, w).
    """

    def __init__(self, num_blocks: int, n_feats: int) -> None:
        super().__init__()
        self.conv_head = conv3x3(3, n_feats)
        self.RBs = res_blocks(num_blocks, n_feats)
        self.conv_tail = conv3x3(n_feats, n_feats)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv_head(lr))
        return x + self.conv_tail(self.RBs(x))


class ImageTail(nn.Module):
    """Features to RGB for the single-path (no CSFI) network: the official MergeTail minus its merge.

    conv3x3 n -> n/2, conv1x1 n/2 -> 3 with no activation between (as official), then clamp.
    ``forward(x)``: (B, n_feats, H, W) -> (B, 3, H, W) in [-1, 1].
    """

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.conv_tail1 = conv3x3(n_feats, n_feats // 2)
        self.conv_tail2 = conv1x1(n_feats // 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.conv_tail2(self.conv_tail1(x)), -1.0, 1.0)
