"""Image panels a researcher looks at: LR-up | Ref | SR | HR | soft attention, side by side."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

TILE_TITLES = ("LR bicubic", "Ref", "SR", "HR", "soft attention")
_FONT_SIZE = 12
_TITLE_HEIGHT = 16


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


def reference_tile(
    ref: Tensor | Sequence[Tensor], height: int, frame_colours: np.ndarray | None = None
) -> np.ndarray:
    """(H', W', 3) uint8 of one reference scaled to ``height`` or, for several (3, Hi, Wi), all of them
    stacked top to bottom, each scaled to ``height / n`` and the narrower ones padded white.
    ``frame_colours`` (n, 3) uint8: reference i framed in colour i (a border of 1/24 of its height)."""
    refs = [ref] if isinstance(ref, Tensor) else list(ref)
    row_height = max(1, height // len(refs))
    tiles = [to_uint8_image(resize_to_height(image, row_height)).copy() for image in refs]
    if frame_colours is not None:
        border = max(1, row_height // 24)
        for tile, colour in zip(tiles, frame_colours, strict=True):
            for edge in (tile[:border], tile[-border:], tile[:, :border], tile[:, -border:]):
                edge[...] = colour
    width = max(tile.shape[1] for tile in tiles)
    stacked = np.full((height, width, 3), 255, dtype=np.uint8)
    for row, tile in enumerate(tiles):
        stacked[row * row_height : (row + 1) * row_height, : tile.shape[1]] = tile
    return stacked


def side_by_side(tiles: Sequence[np.ndarray], gap: int) -> np.ndarray:
    """Tiles of one height (H, Wi, 3) uint8 in a row, separated by ``gap`` white columns."""
    spacer = np.full((tiles[0].shape[0], gap, 3), 255, dtype=np.uint8)
    row: list[np.ndarray] = []
    for tile in tiles:
        row += [tile, spacer]
    return np.concatenate(row[:-1], axis=1)


def make_panel(
    lr_up: Tensor,
    ref: Tensor | Sequence[Tensor],
    sr: Tensor,
    hr: Tensor,
    soft_attention: Tensor | None,
    gap: int = 4,
    titles: Sequence[str] | None = None,
    caption: str | None = None,
) -> np.ndarray:
    """One row: LR-up | Ref (scaled to the HR height; several references stacked) | SR | HR | soft attention.

    Args:
        lr_up, sr, hr: (3, H, W) in [-1, 1]; ref: (3, H', W') in [-1, 1], or a list of them.
        soft_attention: (1, H/4, W/4) in [0, 1] or None (models without texture transfer).
        titles: one title per tile, written above it (e.g. :data:`TILE_TITLES` with the SR's PSNR).
        caption: one line above everything (e.g. the set, image, reference policy and protocol).
    Returns:
        (H [+ title bands], total width, 3) uint8, tiles separated by ``gap`` white pixels.
    """
    height, width = hr.shape[-2:]
    tiles = [to_uint8_image(lr_up), reference_tile(ref, height), to_uint8_image(sr), to_uint8_image(hr)]
    if soft_attention is not None:
        tiles.append(heatmap(soft_attention[0], (height, width)))
    panel = side_by_side(tiles, gap)
    if titles is None and caption is None:
        return panel
    return _with_titles(panel, [tile.shape[1] for tile in tiles], gap, titles, caption)


def _with_titles(
    panel: np.ndarray, tile_widths: Sequence[int], gap: int, titles: Sequence[str] | None, caption: str | None
) -> np.ndarray:
    """The panel under a white band holding the caption and each tile's title (left-aligned above it)."""
    bands = (caption is not None) + (titles is not None)
    canvas = Image.new("RGB", (panel.shape[1], panel.shape[0] + bands * _TITLE_HEIGHT), "white")
    canvas.paste(Image.fromarray(panel), (0, bands * _TITLE_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=_FONT_SIZE)
    if caption is not None:
        draw.text((2, 1), caption, fill="black", font=font)
    if titles is not None:
        left, top = 0, (bands - 1) * _TITLE_HEIGHT
        for title, tile_width in zip(titles, tile_widths, strict=False):
            # each title drawn on its own strip, so a long one is clipped at its tile's edge
            strip = Image.new("RGB", (tile_width, _TITLE_HEIGHT), "white")
            ImageDraw.Draw(strip).text((2, 1), title, fill="black", font=font)
            canvas.paste(strip, (left, top))
            left += tile_width + gap
    return np.asarray(canvas)


PANEL_CAPTION = "LR bicubic | Ref | SR | HR | soft attention"
TRANSFER_CAPTION = (
    "LR bicubic | SR, LR as reference | SR, with the reference | HR | reference | what it added"
)
# |SR with the reference - SR with the LR as reference| of this size (in [-1, 1] units, i.e. 13/255 of
# the 8-bit range) or more is shown at the top of the colour map
_ADDED_FULL_SCALE = 0.1


def make_transfer_panel(
    lr_up: Tensor,
    sr_lr_reference: Tensor,
    sr_reference: Tensor,
    hr: Tensor,
    ref: Tensor | Sequence[Tensor],
    gap: int = 4,
    titles: Sequence[str] | None = None,
    caption: str | None = None,
) -> np.ndarray:
    """One row that shows the reference's texture arriving: LR-up | the SR of the same image with its LR as
    the reference (nothing to transfer) | the SR with a real reference | HR | that reference | where and
    how much the reference changed the SR (mean absolute difference over the channels, a heat map).

    Args:
        lr_up, sr_lr_reference, sr_reference, hr: (3, H, W) in [-1, 1]; ref: (3, H', W') or a list.
    """
    height, width = hr.shape[-2:]
    added = (sr_reference.float() - sr_lr_reference.float()).abs().mean(dim=0) / _ADDED_FULL_SCALE
    tiles = [
        to_uint8_image(lr_up),
        to_uint8_image(sr_lr_reference),
        to_uint8_image(sr_reference),
        to_uint8_image(hr),
        reference_tile(ref, height),
        heatmap(added, (height, width), colormap="magma"),
    ]
    panel = side_by_side(tiles, gap)
    if titles is None and caption is None:
        return panel
    return _with_titles(panel, [tile.shape[1] for tile in tiles], gap, titles, caption)


__all__ = [
    "PANEL_CAPTION",
    "TILE_TITLES",
    "TRANSFER_CAPTION",
    "heatmap",
    "make_panel",
    "make_transfer_panel",
    "reference_tile",
    "resize_to_height",
    "to_uint8_image",
]
