"""How far the generator's parts see: the main network's receptive field walked backwards through its
layers from its configuration (tested against the gradient of the network itself), and the LTE's,
read off its layers."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from ttsr_lightning.models.lte import LTE


def lte_halo(lte: LTE) -> int:
    """Image pixels of context above and below each LTE strip for the strip's features to be the
    whole image's: how far the LTE's convolutions reach beyond a lv3 block (each by its radius in
    the pixels of its level), rounded up to the lv3 grid of its poolings. 12 for VGG19 to relu3_1
    (a reach of 10)."""
    reach, stride = 0, 1
    for layer in lte.modules():
        if isinstance(layer, nn.Conv2d):
            reach += stride * (layer.kernel_size[0] // 2)
        elif isinstance(layer, nn.MaxPool2d):
            pool_stride = layer.stride
            stride *= pool_stride if isinstance(pool_stride, int) else pool_stride[0]
    return stride * math.ceil(reach / stride)


Interval = tuple[int, int]


def _conv(need: Interval, radius: int = 1) -> Interval:
    """Input positions a stride-1 convolution (or a chain of them) of that radius needs."""
    return need[0] - radius, need[1] + radius


def _strided(need: Interval) -> Interval:
    """Finer-grid positions a stride-2 3x3 convolution needs."""
    return 2 * need[0] - 1, 2 * need[1] + 1


def _shuffled(need: Interval) -> Interval:
    """Coarser-grid positions a x2 pixel shuffle needs."""
    return need[0] // 2, need[1] // 2


def _bicubic(need: Interval, scale: int) -> Interval:
    """Coarser-grid positions a x``scale`` bicubic upsampling (align_corners=False) needs: four taps
    around the source coordinate (dst + 0.5) / scale - 0.5."""
    return (
        math.floor((need[0] + 0.5) / scale - 0.5) - 1,
        math.floor((need[1] + 0.5) / scale - 0.5) + 2,
    )


def _hull(*needs: Interval) -> Interval:
    return min(need[0] for need in needs), max(need[1] for need in needs)


def _branch(need: Interval, blocks: int) -> Interval:
    """What a residual branch ``tail(RB^blocks(x))`` needs of x (two 3x3 convs a block, one tail)."""
    return _conv(need, 2 * blocks + 1)


def _fuse(need: Interval, scale: int, has_texture: bool, needs: dict[str, list[Interval]]) -> Interval:
    """Backward through ``F + head(cat(F, T)) * S_up``: records T's and S's needs, returns F's."""
    if not has_texture:
        return need
    head = _conv(need)
    needs[f"t{scale}"].append(head)
    needs["s"].append(need if scale == 1 else _bicubic(need, scale))
    return _hull(need, head)


def _main_net_needs(
    output: Interval, num_res_blocks: Sequence[int], csfi: bool, has_texture: bool
) -> dict[str, list[Interval]]:
    """Positions of each input (``lr``, ``s`` at LR scale, ``t1``/``t2``/``t4`` at scales 1/2/4 of
    the LR) that output positions ``output`` (at 4x) depend on: :class:`MainNet`'s data flow walked
    backwards, one interval per use of an input."""
    sfe_blocks, blocks1, blocks2, blocks3 = (int(n) for n in num_res_blocks)
    needs: dict[str, list[Interval]] = {"lr": [], "s": [], "t1": [], "t2": [], "t4": []}
    if csfi:
        # MergeTail: conv1x1(conv3x3(relu(conv3x3(cat(x3, up4(x1), up2(x2))))))
        merged = _conv(_conv(output))
        final1, final2, final3 = _bicubic(merged, 4), _bicubic(merged, 2), merged
        # x_i = x_i + tail(RB(x_i exchanged)); CSFI3 gives the exchanged maps.
        exchanged1, exchanged2, exchanged3 = (
            _conv(_branch(final1, blocks3)),
            _conv(_branch(final2, blocks3)),
            _conv(_branch(final3, blocks3)),
        )  # the merge conv of each branch
        x1 = _hull(final1, exchanged1, _bicubic(exchanged2, 2), _bicubic(exchanged3, 4))
        x2 = _hull(final2, _strided(exchanged1), exchanged2, _bicubic(exchanged3, 2))
        x3 = _hull(final3, _strided(_strided(exchanged1)), _strided(exchanged2), exchanged3)
        x3 = _fuse(x3, 4, has_texture, needs)
        x2 = _hull(x2, _conv(_shuffled(x3)))  # x3 = relu(ps(conv(x2)))
        # Stage x2: x_i = x_i + tail(RB(x_i exchanged)); CSFI2 gives the exchanged maps.
        exchanged1, exchanged2 = _conv(_branch(x1, blocks2)), _conv(_branch(x2, blocks2))
        x1 = _hull(x1, exchanged1, _bicubic(exchanged2, 2))
        x2 = _hull(x2, _strided(exchanged1), exchanged2)
    else:
        # ImageTail: conv1x1(conv3x3(x3)); x3 = x3 + tail(RB(x3)); x2 likewise.
        x3 = _branch(_conv(output), blocks3)
        x3 = _fuse(x3, 4, has_texture, needs)
        x2 = _branch(_conv(_shuffled(x3)), blocks2)
    x2 = _fuse(x2, 2, has_texture, needs)
    x1 = _hull(x1, _conv(_shuffled(x2))) if csfi else _conv(_shuffled(x2))
    x1 = _branch(x1, blocks1)
    x1 = _fuse(x1, 1, has_texture, needs)
    # SFE: x = relu(conv_head(lr)); x + tail(RB(x))
    needs["lr"].append(_conv(_branch(x1, sfe_blocks)))
    return needs


def main_net_receptive_field(
    num_res_blocks: Sequence[int], csfi: bool = True, use_hard_attention: bool = True
) -> int:
    """The main network's receptive field radius in LR pixels, exactly, from its configuration.

    The largest distance, in LR pixels, between the LR pixel an output pixel lies in and an LR
    pixel of any input it depends on (``lr``, S, T_lv3 at LR scale; T_lv2, T_lv1 at 2x, 4x counted
    in the LR pixels they lie in). A tile of the main network with at least this halo computes its
    core exactly as the whole image does. 100 for the paper's network (16, 16, 8, 4 blocks, CSFI).
    Independent of ``n_feats``.
    """
    centre = 4 * 10_000  # far from any border: the walk ignores borders
    reach = 0
    for phase in range(4):  # the four output pixels of one LR pixel
        needs = _main_net_needs((centre + phase, centre + phase), num_res_blocks, csfi, use_hard_attention)
        for name, intervals in needs.items():
            scale = 1 if name in ("lr", "s") else int(name[1])
            for low, high in intervals:
                reach = max(reach, centre // 4 - low // scale, high // scale - centre // 4)
    return reach
