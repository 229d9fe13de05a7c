"""Pictures of TTSR's attention: the soft-attention map S and the hard-attention correspondences.

Hard attention (paper Eq. (3)) picks, for every LR position, the Ref position whose texture it takes.
To make that visible, every Ref lv3 position gets its own colour from its (x, y)
(:func:`position_colours`: blue top-left, red top-right, cyan bottom-left, yellow bottom-right,
blended in between), and every LR position is painted with the colour of the Ref position it took
its texture from (:func:`correspondence_picture`). A region of the SR painted like a region of the
Ref colour key took its texture from there; a smooth gradient means the texture came from a
similarly laid-out region, speckle means it came from scattered places.

Soft attention S (Eq. (4)) is the relevance of that chosen Ref position, in [0, 1]: the heat map is
bright where the Ref had a good match and dark where the LR found nothing like itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from ttsr_lightning.data.preprocessing import SCALE
from ttsr_lightning.models import split_hard_index
from ttsr_lightning.panel_images import heatmap, reference_tile, side_by_side, to_uint8_image

ATTENTION_PANEL_CAPTION = (
    "SR | soft attention | hard attention (each LR position in the colour of its Ref source) | "
    "Ref with its colour key"
)
# How much of the Ref shows through its colour key (0: key only, 1: Ref only).
REF_KEY_OPACITY = 0.5


def position_colours(height: int, width: int) -> np.ndarray:
    """A distinct colour for every position of a ``height`` x ``width`` grid, from its (x, y).

    red = x / (width - 1), green = y / (height - 1), blue = 1 - red, so (red, green) identifies the
    position. Returns (height, width, 3) uint8.
    """
    if height < 1 or width < 1:
        raise ValueError(f"position_colours needs a grid of at least 1x1, got {height}x{width}")
    x = np.linspace(0.0, 1.0, width) if width > 1 else np.zeros(1)
    y = np.linspace(0.0, 1.0, height) if height > 1 else np.zeros(1)
    red = np.broadcast_to(x[None, :], (height, width))
    green = np.broadcast_to(y[:, None], (height, width))
    colours = np.stack([red, green, 1.0 - red], axis=-1)
    return (colours * 255).round().astype(np.uint8)


def correspondence_picture(
    hard_index: torch.Tensor, lr_size: tuple[int, int], ref_size: tuple[int, int]
) -> np.ndarray:
    """Each LR position painted with the :func:`position_colours` colour of the Ref position it chose.

    Args:
        hard_index: (h*w,) int64, row-major index into the (Hr, Wr) Ref lv3 grid (one image of
            ``GeneratorOutput.hard_index``).
        lr_size: (h, w), the LR size (= the lv3 grid of the query).
        ref_size: (Hr, Wr), the Ref lv3 grid (the Ref size / 4).
    Returns:
        (h, w, 3) uint8.
    """
    height, width = lr_size
    if hard_index.shape != (height * width,):
        raise ValueError(
            f"hard_index must be ({height * width},) for an LR of {height}x{width}, "
            f"got {tuple(hard_index.shape)}"
        )
    colours = position_colours(*ref_size).reshape(-1, 3)
    index = hard_index.detach().cpu().numpy()
    if index.min() < 0 or index.max() >= len(colours):
        raise ValueError(f"hard_index must lie in [0, {len(colours)}) for a Ref lv3 grid of {ref_size}")
    return colours[index].reshape(height, width, 3)


def _resize(image: np.ndarray, height: int, width: int, nearest: bool) -> np.ndarray:
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize((width, height), resample))


def ref_colour_key(ref: torch.Tensor) -> np.ndarray:
    """The Ref with the colour of every lv3 position laid over it (opacity ``1 - REF_KEY_OPACITY``).

    ref: (3, H, W) in [-1, 1], H and W multiples of 4. Returns (H, W, 3) uint8.
    """
    height, width = ref.shape[-2:]
    key = _resize(position_colours(height // SCALE, width // SCALE), height, width, nearest=True)
    blend = REF_KEY_OPACITY * to_uint8_image(ref).astype(np.float64) + (1 - REF_KEY_OPACITY) * key
    return blend.round().astype(np.uint8)


def attention_panel(
    sr: torch.Tensor, ref: torch.Tensor, soft_attention: torch.Tensor, hard_index: torch.Tensor, gap: int = 4
) -> np.ndarray:
    """One row: SR | soft attention | hard-attention correspondences | Ref with its colour key.

    Args:
        sr: (3, 4h, 4w) in [-1, 1]; ref: (3, H, W) in [-1, 1], H and W multiples of 4.
        soft_attention: (1, h, w) in [0, 1]; hard_index: (h*w,) int64 into the (H/4, W/4) Ref grid.
    Returns:
        (4h, total width, 3) uint8: the attention maps nearest-upsampled to the SR size, the Ref key
        scaled to the SR height; tiles separated by ``gap`` white pixels.
    """
    height, width = sr.shape[-2:]
    lr_size = (height // SCALE, width // SCALE)
    ref_size = (ref.shape[-2] // SCALE, ref.shape[-1] // SCALE)
    if tuple(soft_attention.shape) != (1, *lr_size):
        raise ValueError(
            f"soft_attention must be (1, {lr_size[0]}, {lr_size[1]}) for an SR of {height}x{width}, "
            f"got {tuple(soft_attention.shape)}"
        )
    correspondences = correspondence_picture(hard_index, lr_size, ref_size)
    key = ref_colour_key(ref)
    key_width = max(1, round(key.shape[1] * height / key.shape[0]))
    tiles = [
        to_uint8_image(sr),
        heatmap(soft_attention[0], (height, width)),
        _resize(correspondences, height, width, nearest=True),
        _resize(key, height, key_width, nearest=False),
    ]
    return side_by_side(tiles, gap)


def reference_choice_panel(
    sr: torch.Tensor,
    refs: Sequence[torch.Tensor],
    soft_attention: torch.Tensor,
    hard_index: torch.Tensor,
    gap: int = 4,
) -> np.ndarray:
    """Several references: SR | soft attention | which reference each LR position took its texture
    from (one colour per reference) | the references stacked, each framed in its colour.

    Args:
        sr: (3, 4h, 4w) in [-1, 1]; refs: R tensors (3, Hi, Wi) in [-1, 1], sides multiples of 4.
        soft_attention: (1, h, w) in [0, 1]; hard_index: (h*w,) int64 over the concatenated
            references' lv3 grids (``GeneratorOutput.hard_index`` of a multi-reference call).
    Returns:
        (4h, total width, 3) uint8.
    """
    height, width = sr.shape[-2:]
    lr_size = (height // SCALE, width // SCALE)
    sizes = [(ref.shape[-2] // SCALE, ref.shape[-1] // SCALE) for ref in refs]
    reference, _ = split_hard_index(hard_index.detach().cpu(), sizes)
    palette = (np.asarray(colormaps["tab10"](np.arange(10))[:, :3]) * 255).round().astype(np.uint8)
    choice = palette[reference.numpy() % len(palette)].reshape(*lr_size, 3)
    tiles = [
        to_uint8_image(sr),
        heatmap(soft_attention[0], (height, width)),
        _resize(choice, height, width, nearest=True),
        reference_tile(refs, height, palette[np.arange(len(refs)) % len(palette)]),
    ]
    return side_by_side(tiles, gap)


__all__ = [
    "ATTENTION_PANEL_CAPTION",
    "attention_panel",
    "reference_choice_panel",
    "correspondence_picture",
    "position_colours",
    "ref_colour_key",
]
