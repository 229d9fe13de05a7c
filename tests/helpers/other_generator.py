"""A generator that is not TTSR, for the tests that plug it in through the config alone.

No texture extractor, no search, no attention: a few convolutions predict a correction to the bicubic
input from it and from how much detail the references hold (the mean absolute difference between
each reference and its down-up copy, per colour channel). It defines none of the optional hooks of
:mod:`ttsr_lightning.models.interface`, so every default is exercised.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ttsr_lightning.models import GeneratorOutput


class DetailConvGenerator(nn.Module):
    """``sr = clamp(lr_up + convs(cat(lr_up, reference detail)), -1, 1)``.

    Args:
        channels: width of the hidden convolutions.
        layers: number of hidden 3x3 convolutions (each followed by a ReLU).
    """

    def __init__(self, channels: int = 8, layers: int = 2) -> None:
        super().__init__()
        body: list[nn.Module] = [nn.Conv2d(6, channels, 3, padding=1), nn.ReLU()]
        for _ in range(layers - 1):
            body += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        body.append(nn.Conv2d(channels, 3, 3, padding=1))
        self.body = nn.Sequential(*body)

    def forward(
        self,
        lr: torch.Tensor,
        lr_up: torch.Tensor,
        ref: torch.Tensor | Sequence[torch.Tensor],
        ref_down_up: torch.Tensor | Sequence[torch.Tensor],
    ) -> GeneratorOutput:
        refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
        downs = [ref_down_up] if isinstance(ref_down_up, torch.Tensor) else list(ref_down_up)
        detail = torch.stack(
            [(image - down).abs().mean(dim=(2, 3)) for image, down in zip(refs, downs, strict=True)]
        ).mean(dim=0)  # (B, 3)
        features = torch.cat([lr_up, detail[:, :, None, None].expand_as(lr_up)], dim=1)
        sr = torch.clamp(lr_up + self.body(features), -1.0, 1.0)
        return GeneratorOutput(sr, None, None, None, None, None)
