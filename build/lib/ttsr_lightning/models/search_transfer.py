"""Relevance embedding, hard attention and soft attention (paper Sec. 3.1, Eq. (2)-(5)).

This is the official formulation, written for reading: it materialises the whole relevance matrix
(B, Hr*Wr, h*w) and the unfolded values. It is the oracle the chunked ``LeanSearchTransfer`` is
tested against; both share the forward signature and the :class:`TransferredTextures` result.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# Value-patch geometry per level: (kernel, padding, stride). A 3x3 query patch at lv3 covers 6x6
# pixels at lv2 and 12x12 at lv1, so each level's unfold yields one column per lv3 Ref position.
_LV3_PATCH = (3, 1, 1)
_LV2_PATCH = (6, 2, 2)
_LV1_PATCH = (12, 4, 4)

# The official fold divides by this constant, not by the true overlap count: interior pixels are
# exact averages of 9 patches, the outer ring is dimmed (corners x4/9, edges x6/9). Kept for parity.
_FOLD_DIVISOR = 9.0


class TransferredTextures(NamedTuple):
    """Result of the search-transfer; h, w = the LR (lv3) size.

    soft_attention: (B, 1, h, w) in [0, 1], the best cosine relevance per LR position (S).
    hard_index: (B, h*w) int64, row-major index of the most relevant Ref lv3 position (Eq. (3)).
    t_lv3: (B, 256, h, w), t_lv2: (B, 128, 2h, 2w), t_lv1: (B, 64, 4h, 4w): transferred textures, >= 0.
    """

    soft_attention: torch.Tensor
    hard_index: torch.Tensor
    t_lv3: torch.Tensor
    t_lv2: torch.Tensor
    t_lv1: torch.Tensor


def transfer_level(
    value: torch.Tensor, hard_index: torch.Tensor, output_size: tuple[int, int], patch: tuple[int, int, int]
) -> torch.Tensor:
    """Copies the Ref patch at ``hard_index`` to every LR position and folds the patches into a map.

    value: (B, C, Hv, Wv) Ref features; hard_index: (B, L) with L = output positions;
    returns (B, C, *output_size), overlaps summed and divided by the constant 9.
    """
    kernel, padding, stride = patch
    value_patches = F.unfold(value, kernel_size=kernel, padding=padding, stride=stride)  # (B, C*k*k, Hr*Wr)
    index = hard_index.unsqueeze(1).expand(-1, value_patches.size(1), -1)  # (B, C*k*k, L)
    transferred = torch.gather(value_patches, 2, index)
    folded = F.fold(transferred, output_size=output_size, kernel_size=kernel, padding=padding, stride=stride)
    return folded / _FOLD_DIVISOR


class SearchTransfer(nn.Module):
    """Hard/soft attention between LR and Ref texture features; no parameters.

    ``forward(query_lv3, key_lv3, value_lv1, value_lv2, value_lv3)``:
        query_lv3: (B, 256, h, w) LTE lv3 of ``lr_up`` (Q);
        key_lv3: (B, 256, Hr, Wr) LTE lv3 of ``ref_down_up`` (K);
        value_lv1 / value_lv2 / value_lv3: LTE lv1/lv2/lv3 of ``ref`` (V),
        (B, 64, 4Hr, 4Wr) / (B, 128, 2Hr, 2Wr) / (B, 256, Hr, Wr), all >= 0.
    Returns :class:`TransferredTextures`.

    Relevance (Eq. (2)) is the cosine between 3x3 lv3 patches (unfolded with padding 1 and
    L2-normalised over their 256*9 entries); S is the raw maximum over Ref positions (no sigmoid,
    no temperature) and the arg-max picks the Ref patch copied at all three levels.
    """

    def forward(
        self,
        query_lv3: torch.Tensor,
        key_lv3: torch.Tensor,
        value_lv1: torch.Tensor,
        value_lv2: torch.Tensor,
        value_lv3: torch.Tensor,
    ) -> TransferredTextures:
        batch, _, height, width = query_lv3.shape
        query_patches = F.normalize(F.unfold(query_lv3, kernel_size=3, padding=1), dim=1)  # (B, 2304, h*w)
        key_patches = F.normalize(F.unfold(key_lv3, kernel_size=3, padding=1), dim=1)  # (B, 2304, Hr*Wr)
        relevance = torch.bmm(key_patches.transpose(1, 2), query_patches)  # (B, Hr*Wr, h*w)
        soft_attention, hard_index = torch.max(relevance, dim=1)  # (B, h*w) each

        t_lv3 = transfer_level(value_lv3, hard_index, (height, width), _LV3_PATCH)
        t_lv2 = transfer_level(value_lv2, hard_index, (2 * height, 2 * width), _LV2_PATCH)
        t_lv1 = transfer_level(value_lv1, hard_index, (4 * height, 4 * width), _LV1_PATCH)
        return TransferredTextures(
            soft_attention=soft_attention.view(batch, 1, height, width),
            hard_index=hard_index,
            t_lv3=t_lv3,
            t_lv2=t_lv2,
            t_lv1=t_lv1,
        )
