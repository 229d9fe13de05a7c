"""Building blocks of the main network: convolutions, residual blocks, shallow feature extraction, image tail.

No normalisation layers anywhere (as the official code); every convolution has a bias.

Without autograd (evaluation, inference) the networks keep fewer full-resolution maps alive: a ReLU
or a residual sum is written into the activation just computed (:func:`fresh_relu`,
:func:`add_to_fresh`, :func:`multiply_fresh`) instead of a new tensor. The values are the same bit
for bit (float addition and multiplication commute); with autograd the operations are out of place,
as the official code's.
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


def _writable(fresh: torch.Tensor, other: torch.Tensor) -> bool:
    """Whether ``fresh op other`` may be written into ``fresh``: no autograd, and the result has
    fresh's dtype (under autocast a bf16 activation and a float32 tensor give float32) and shape."""
    return (
        not torch.is_grad_enabled()
        and torch.result_type(fresh, other) == fresh.dtype
        and torch.broadcast_shapes(fresh.shape, other.shape) == fresh.shape
    )


def fresh_relu(fresh: torch.Tensor) -> torch.Tensor:
    """ReLU of an activation nothing else holds (a conv's output): in place without autograd."""
    return F.relu(fresh, inplace=not torch.is_grad_enabled())


def add_to_fresh(other: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """``other + fresh``, where ``fresh`` is an activation nothing else holds (a residual branch's
    output): written into ``fresh`` without autograd, same values."""
    return fresh.add_(other) if _writable(fresh, other) else other + fresh


def multiply_fresh(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``fresh * other``, written into ``fresh`` (an activation nothing else holds) without autograd."""
    return fresh.mul_(other) if _writable(fresh, other) else fresh * other


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
        return add_to_fresh(x, self.conv2(fresh_relu(self.conv1(x))))


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
        x = fresh_relu(self.conv_head(lr))
        return add_to_fresh(x, self.conv_tail(self.RBs(x)))


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
