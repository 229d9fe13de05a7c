"""The main super-resolution network: SFE, three texture-fusion stages (x1, x2, x4), CSFI, merge tail."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

import torch
from torch import nn

from ttsr_lightning.models.blocks import (
    SFE,
    ImageTail,
    add_to_fresh,
    bicubic_upsample,
    conv3x3,
    fresh_relu,
    multiply_fresh,
    res_blocks,
)
from ttsr_lightning.models.csfi import CSFI2, CSFI3, MergeTail

# Channels of the transferred textures T_lv3, T_lv2, T_lv1 of the paper's LTE (relu3_1, relu2_1, relu1_1).
TEXTURE_CHANNELS = (256, 128, 64)

# A transferred texture, or a function that makes it when its stage needs it (see MainNet.forward).
Texture: TypeAlias = torch.Tensor | Callable[[], torch.Tensor]


def _stage_block_counts(num_res_blocks: Sequence[int]) -> tuple[int, int, int, int]:
    counts = tuple(int(n) for n in num_res_blocks)
    if len(counts) != 4 or any(n < 0 for n in counts):
        raise ValueError(
            "num_res_blocks must be 4 non-negative block counts (SFE, stage x1, x2, x4), "
            f"e.g. [16, 16, 8, 4]; got {list(num_res_blocks)}"
        )
    return counts[0], counts[1], counts[2], counts[3]


class MainNet(nn.Module):
    """TTSR's main network (paper Sec. 3.3, Fig. 3), with the switches of the paper's ablations.

    Args:
        n_feats: feature channels of every stage (64 in TTSR; 80/96 in the "wider" ablation).
        num_res_blocks: residual blocks of (SFE, stage x1, stage x2, stage x4); official 16+16+8+4.
        use_hard_attention: False builds "Base": no texture-fusion heads (``conv11_head``, ``conv22_head``,
            ``conv33_head``) and ``forward`` takes no textures.
        use_soft_attention: True weights the fused texture by S (official: ``F + conv(cat(F, T)) * S``,
            S bicubic-upsampled x2/x4 at the finer stages); False fuses ``F + conv(cat(F, T))``.
            Needs ``use_hard_attention``.
        csfi: True is the official multi-branch network (CSFI2 after stage x2, CSFI3 after stage x4,
            MergeTail). False is one path of stacked stages: after each pixel-shuffle only the finest
            branch continues (``RB22`` + ``conv22_tail``, then ``RB33`` + ``conv33_tail``, each with
            its residual add) and ``tail`` = the MergeTail convs without the merge
            (conv3x3 n -> n/2, conv1x1 n/2 -> 3, clamp). The paper does not specify this variant;
            this construction has 4,081,987 / 6,294,803 / 8,984,547 parameters for n_feats 64/80/96.
        texture_channels: channels of (T_lv3, T_lv2, T_lv1), the LTE's (lv3, lv2, lv1) channels that
            the fusion heads take (the generator passes its LTE's; the paper's by default).

    Submodule names follow the official ``MainNet`` (SFE, conv11_head, RB11, conv11_tail, conv12,
    conv22_head, ex12, RB21, RB22, ..., merge_tail), so official keys load by name.

    ``forward(lr, soft_attention, t_lv3, t_lv2, t_lv1)``:
        lr: (B, 3, h, w) in [-1, 1];
        soft_attention: (B, 1, h, w) in [0, 1] (S), given iff ``use_soft_attention=True``;
        t_lv3 (B, C3, h, w), t_lv2 (B, C2, 2h, 2w), t_lv1 (B, C1, 4h, 4w): transferred textures,
        (C3, C2, C1) = ``texture_channels`` (256, 128, 64 for the paper's LTE), given iff
        ``use_hard_attention=True``; each may be a function returning it, called once when its stage
        fuses it (then the map, T_lv1 as large as 64 output channels, exists only through its fusion
        rather than through the whole network).
        Returns sr (B, 3, 4h, 4w) in [-1, 1] (clamped; no global skip from the bicubic input).
        Without autograd the activations are updated in place and dropped as soon as the data flow
        allows (:mod:`~ttsr_lightning.models.blocks`): the same output, bit for bit, with fewer
        full-resolution maps alive at once.
    """

    def __init__(
        self,
        n_feats: int = 64,
        num_res_blocks: Sequence[int] = (16, 16, 8, 4),
        use_hard_attention: bool = True,
        use_soft_attention: bool = True,
        csfi: bool = True,
        texture_channels: Sequence[int] = TEXTURE_CHANNELS,
    ) -> None:
        super().__init__()
        if n_feats < 2:
            raise ValueError(f"n_feats must be >= 2 (the tail halves it), got {n_feats}")
        if use_soft_attention and not use_hard_attention:
            raise ValueError(
                "use_soft_attention=True needs use_hard_attention=True (S weights the fused textures)"
            )
        self.num_res_blocks = _stage_block_counts(num_res_blocks)
        sfe_blocks, stage1_blocks, stage2_blocks, stage3_blocks = self.num_res_blocks
        self.n_feats = n_feats
        self.use_hard_attention = use_hard_attention
        self.use_soft_attention = use_soft_attention
        self.csfi = csfi

        self.SFE = SFE(sfe_blocks, n_feats)
        # Texture-fusion heads: 3x3 conv of cat(F, T), no activation (official).
        self.conv11_head, self.conv22_head, self.conv33_head = (
            (conv3x3(n_feats + channels, n_feats) if use_hard_attention else None)
            for channels in texture_channels
        )
        self.RB11 = res_blocks(stage1_blocks, n_feats)
        self.conv11_tail = conv3x3(n_feats, n_feats)
        self.conv12 = conv3x3(n_feats, 4 * n_feats)
        self.ps12 = nn.PixelShuffle(2)
        self.RB22 = res_blocks(stage2_blocks, n_feats)
        self.conv22_tail = conv3x3(n_feats, n_feats)
        self.conv23 = conv3x3(n_feats, 4 * n_feats)
        self.ps23 = nn.PixelShuffle(2)
        self.RB33 = res_blocks(stage3_blocks, n_feats)
        self.conv33_tail = conv3x3(n_feats, n_feats)
        if csfi:
            self.ex12 = CSFI2(n_feats)
            self.RB21 = res_blocks(stage2_blocks, n_feats)
            self.conv21_tail = conv3x3(n_feats, n_feats)
            self.ex123 = CSFI3(n_feats)
            self.RB31 = res_blocks(stage3_blocks, n_feats)
            self.RB32 = res_blocks(stage3_blocks, n_feats)
            self.conv31_tail = conv3x3(n_feats, n_feats)
            self.conv32_tail = conv3x3(n_feats, n_feats)
            self.merge_tail = MergeTail(n_feats)
        else:
            self.tail = ImageTail(n_feats)

    @property
    def output_conv(self) -> nn.Conv2d:
        """The last convolution (features to RGB), before the clamp."""
        tail = self.merge_tail if self.csfi else self.tail
        return tail.conv_tail2

    def forward(
        self,
        lr: torch.Tensor,
        soft_attention: torch.Tensor | None = None,
        t_lv3: Texture | None = None,
        t_lv2: Texture | None = None,
        t_lv1: Texture | None = None,
    ) -> torch.Tensor:
        inputs = {"soft_attention": soft_attention, "t_lv3": t_lv3, "t_lv2": t_lv2, "t_lv1": t_lv1}
        needed = {
            "soft_attention": self.use_soft_attention,
            "t_lv3": self.use_hard_attention,
            "t_lv2": self.use_hard_attention,
            "t_lv1": self.use_hard_attention,
        }
        wrong = [
            f"{name} {'missing' if needed[name] else 'given'}"
            for name, value in inputs.items()
            if (value is not None) != needed[name]
        ]
        if wrong:
            raise ValueError(
                f"MainNet(use_hard_attention={self.use_hard_attention}, "
                f"use_soft_attention={self.use_soft_attention}): {', '.join(wrong)}"
            )

        # Stage x1 (LR scale): fuse T_lv3, then a long-skip residual trunk.
        x1 = self._fuse(self.SFE(lr), t_lv3, self.conv11_head, soft_attention, 1)
        x1 = add_to_fresh(x1, self.conv11_tail(self.RB11(x1)))

        # Stage x2: pixel-shuffle up, fuse T_lv2.
        x2 = fresh_relu(self.ps12(self.conv12(x1)))
        x2 = self._fuse(x2, t_lv2, self.conv22_head, soft_attention, 2)
        if not self.csfi:
            x2 = add_to_fresh(x2, self.conv22_tail(self.RB22(x2)))
            x3 = fresh_relu(self.ps23(self.conv23(x2)))
            x3 = self._fuse(x3, t_lv1, self.conv33_head, soft_attention, 4)
            x3 = add_to_fresh(x3, self.conv33_tail(self.RB33(x3)))
            return self.tail(x3)

        x1_exchanged, x2_exchanged = self.ex12(x1, x2)
        x1 = add_to_fresh(x1, self.conv21_tail(self.RB21(x1_exchanged)))
        x2 = add_to_fresh(x2, self.conv22_tail(self.RB22(x2_exchanged)))
        del x1_exchanged, x2_exchanged

        # Stage x4: pixel-shuffle the x2 branch, fuse T_lv1, exchange across the three branches.
        x3 = fresh_relu(self.ps23(self.conv23(x2)))
        x3 = self._fuse(x3, t_lv1, self.conv33_head, soft_attention, 4)
        x1_exchanged, x2_exchanged, x3_exchanged = self.ex123(x1, x2, x3)
        x1 = add_to_fresh(x1, self.conv31_tail(self.RB31(x1_exchanged)))
        x2 = add_to_fresh(x2, self.conv32_tail(self.RB32(x2_exchanged)))
        del x1_exchanged, x2_exchanged
        x3 = add_to_fresh(x3, self.conv33_tail(self.RB33(x3_exchanged)))
        del x3_exchanged
        return self.merge_tail(x1, x2, x3)

    @staticmethod
    def _fuse(
        features: torch.Tensor,
        texture: Texture | None,
        head: nn.Module | None,
        soft_attention: torch.Tensor | None,
        scale: int,
    ) -> torch.Tensor:
        """Texture fusion at one stage (Eq. (6)): ``F + conv(cat(F, T)) [* S upsampled by scale]``."""
        if head is None or texture is None:
            return features
        fused = head(torch.cat((features, texture() if callable(texture) else texture), dim=1))
        if soft_attention is not None:
            fused = multiply_fresh(
                fused, soft_attention if scale == 1 else bicubic_upsample(soft_attention, scale)
            )
        return add_to_fresh(features, fused)
