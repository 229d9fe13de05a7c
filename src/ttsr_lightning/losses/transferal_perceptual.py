"""Transferal perceptual loss: SR texture features against the transferred textures T."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ttsr_lightning.losses.context import TEXTURE_EXTRACTOR, LossContext

Distance = Literal["l1", "l2"]
_DISTANCES = {"l1": F.l1_loss, "l2": F.mse_loss}


class TransferalPerceptualLoss(nn.Module):
    """The official ``TPerceptualLoss``: mean over the three levels of a plain feature distance.

    Args:
        distance: ``"l2"`` (MSE, the official default) or ``"l1"``; both are means over elements.
        weight_by_soft_attention: weight both sides by ``sigmoid(S)`` at each level (the official
            ``tpl_use_S``, off by default and in the paper recipes); S is upsampled bicubically x2 and
            x4 for lv2 and lv1 before the sigmoid.

    ``forward(sr_features, t_lv3, t_lv2, t_lv1, soft_attention=None)``:
        sr_features: ``(lv1, lv2, lv3)`` of the SR image from a frozen copy of the current LTE,
            (B, 64, 4h, 4w), (B, 128, 2h, 2w), (B, 256, h, w);
        t_lv3, t_lv2, t_lv1: the transferred textures, same shapes as sr lv3, lv2, lv1 (not detached:
            the loss also trains the LTE through T, as the official code);
        soft_attention: S (B, 1, h, w) in [0, 1]; needed only with ``weight_by_soft_attention``.
    Returns a scalar. ``term(context)``: the SR features from the context's frozen texture extractor
    against the context's transferred textures.
    """

    needs: ClassVar[tuple[str, ...]] = (TEXTURE_EXTRACTOR,)

    def __init__(self, distance: Distance = "l2", weight_by_soft_attention: bool = False) -> None:
        super().__init__()
        if distance not in _DISTANCES:
            raise ValueError(f"distance must be one of {sorted(_DISTANCES)}, got {distance!r}")
        self.distance = distance
        self.weight_by_soft_attention = weight_by_soft_attention

    def forward(
        self,
        sr_features: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        t_lv3: torch.Tensor,
        t_lv2: torch.Tensor,
        t_lv1: torch.Tensor,
        soft_attention: torch.Tensor | None = None,
    ) -> torch.Tensor:
        sr_lv1, sr_lv2, sr_lv3 = sr_features
        distance = _DISTANCES[self.distance]
        if not self.weight_by_soft_attention:
            return (distance(sr_lv3, t_lv3) + distance(sr_lv2, t_lv2) + distance(sr_lv1, t_lv1)) / 3.0
        if soft_attention is None:
            raise ValueError(
                "TransferalPerceptualLoss(weight_by_soft_attention=True) needs soft_attention (S)"
            )
        height, width = soft_attention.shape[-2:]
        weight_lv3 = torch.sigmoid(soft_attention)
        weight_lv2 = torch.sigmoid(
            F.interpolate(soft_attention, size=(2 * height, 2 * width), mode="bicubic")
        )
        weight_lv1 = torch.sigmoid(
            F.interpolate(soft_attention, size=(4 * height, 4 * width), mode="bicubic")
        )
        return (
            distance(sr_lv3 * weight_lv3, t_lv3 * weight_lv3)
            + distance(sr_lv2 * weight_lv2, t_lv2 * weight_lv2)
            + distance(sr_lv1 * weight_lv1, t_lv1 * weight_lv1)
        ) / 3.0

    def term(self, context: LossContext) -> torch.Tensor:
        out = context.output
        assert context.texture_extractor is not None and out.t_lv3 is not None
        assert out.t_lv2 is not None and out.t_lv1 is not None
        sr_features = context.texture_extractor(context.sr)
        return self(sr_features, out.t_lv3, out.t_lv2, out.t_lv1, out.soft_attention)
