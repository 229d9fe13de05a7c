"""Image panels a researcher looks at: LR-up | Ref | SR | HR | soft attention, side by side."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from matplotlib import colormaps
from torch import Tensor


def to_uint8_image(image: Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8, rounded as the official evaluation."""
    return ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def heatmap(values: Tensor, size: tuple[int, int], colormap: str = "viridis") -> np.ndarray:
    """(h, w) values in [0, 1] -> (H, W, 3) uint8 colour image, nearest-upsampled to ``size``."""
    grid = F.interpolate(values.detach().float().cpu()[None, None], size=size, mode="nearest")[0, 0]
    rgba = colormaps[colormap](grid.clamp(0, 1).numpy())
    return (rgba[..., :3] * 255).round().astype(np.uint8)


def resize_to_height(image: Tensor, height: int) -> Tensor:
    """(3, H, W) -> (3, height, W * height / H), bilinear; keeps the reference's aspect ratio."""
    width = max(1, round(image.shape[-1] * height / image.shape[-2]))
    return F.interpolate(image[None].float(), size=(height, width), mode="bilinear", align_corners=False)[0]


def make_panel(
    lr_up: Tensor, ref: Tensor, sr: Tensor, hr: Tensor, soft_attention: Tensor | None, gap: int = 4
) -> np.ndarray:
    """One row: LR-up | Ref (scaled to the HR height) | SR | HR | soft attention map.

    Args:
        lr_up, sr, hr: (3, H, W) in [-1, 1]; ref: (3, H', W') in [-1, 1].
        soft_attention: (1, H/4, W/4) in [0, 1] or None (models without texture transfer).
    Returns:
        (H, total width, 3) uint8, tiles separated by ``gap`` white pixels.
    """
    height, width = hr.shape[-2:]
    tiles = [to_uint8_image(lr_up), to_uint8_image(resize_to_height(ref, height)), to_uint8_image(sr)]
    tiles.append(to_uint8_image(hr))
    if soft_attention is not None:
        tiles.append(heatmap(soft_attention[0], (height, width)))
    spacer = np.full((height, gap, 3), 255, dtype=np.uint8)
    row: list[np.ndarray] = []
    for tile in tiles:
        row += [tile, spacer]
    return np.concatenate(row[:-1], axis=1)


PANEL_CAPTION = "LR bicubic | Ref | SR | HR | soft attention"


__all__ = ["PANEL_CAPTION", "heatmap", "make_panel", "resize_to_height", "to_uint8_image"]
