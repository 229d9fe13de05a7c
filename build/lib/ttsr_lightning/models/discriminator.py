"""SRNTT-style critic without normalisation layers (the official ``loss/discriminator.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ttsr_lightning.models.blocks import conv3x3

# (out_channels, stride) of conv1..conv10; every second conv halves the size, five halvings in all.
_CONVS = ((32, 1), (32, 2), (64, 1), (64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2))
_NEGATIVE_SLOPE = 0.2


class Discriminator(nn.Module):
    """Ten 3x3 convs + LeakyReLU(0.2), then fc 1024 + LeakyReLU(0.2) and fc 1 (a raw WGAN critic score).

    Args:
        in_size: side of the square input, a multiple of 32 (160 = 4 x the 40 px LR training crop).

    Keys as official (``conv1..conv10``, ``fc1``, ``fc2``); 17,821,473 parameters at in_size=160.
    ``forward(x)``: (B, 3, in_size, in_size) in [-1, 1] -> (B, 1), unbounded.
    """

    def __init__(self, in_size: int = 160) -> None:
        super().__init__()
        if in_size <= 0 or in_size % 32:
            raise ValueError(
                f"in_size must be a positive multiple of 32 (five stride-2 convs), got {in_size}"
            )
        self.in_size = in_size
        in_channels = 3
        for index, (out_channels, stride) in enumerate(_CONVS, start=1):
            self.add_module(f"conv{index}", conv3x3(in_channels, out_channels, stride))
            in_channels = out_channels
        self.fc1 = nn.Linear((in_size // 32) ** 2 * in_channels, 1024)
        self.fc2 = nn.Linear(1024, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (3, self.in_size, self.in_size):
            raise ValueError(
                f"Discriminator(in_size={self.in_size}) takes (B, 3, {self.in_size}, {self.in_size}); "
                f"got {tuple(x.shape)}"
            )
        for index in range(1, len(_CONVS) + 1):
            x = F.leaky_relu(self.get_submodule(f"conv{index}")(x), _NEGATIVE_SLOPE)
        x = F.leaky_relu(self.fc1(x.flatten(1)), _NEGATIVE_SLOPE)
        return self.fc2(x)
