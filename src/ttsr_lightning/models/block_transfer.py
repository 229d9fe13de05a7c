"""The lean transfer: the official unfold-gather-fold of the chosen Ref patches as nine block gathers.

The value patch of a Ref position is a 3x3 grid of s x s blocks (s = 1, 2, 4 at lv3, lv2, lv1) centred
on that position, and the official fold puts block (dy, dx) of the patch chosen by LR position p at
block p + (dy, dx) of the output. So each level is a sum of nine gathers of Ref blocks (the Ref
pixel-unshuffled into rows of s x s blocks: a *block table*), one per offset. A zero border of one
block plays the unfold's padding and the sum is divided by 9, which reproduces the official fold
exactly, its dimmed outer ring included. Several references share one table, each with its own zero
border: memory stays linear in the total reference area.

The transfer is defined for any window of the LR grid (:func:`window_rows`, :func:`transfer_window`),
reading the whole grid's choices, so a window's textures equal the same positions of the whole grid's.
The whole forward (:class:`~ttsr_lightning.models.lean_search_transfer.LeanSearchTransfer`) transfers
the window that is the whole grid (:func:`transfer_grid`); :mod:`ttsr_lightning.budgeted` transfers
tiles, filling the tables strip by strip (:func:`empty_block_table`, :func:`fill_block_table`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ttsr_lightning.models.patch_search import device_ints, split_unchecked

# The official fold divides by a constant 9, not by the true overlap count (see SearchTransfer).
_FOLD_DIVISOR = 9.0
# Block size s of the textures T_lv3, T_lv2, T_lv1 (in that order): the s x s block of each level that
# one lv3 position covers (the LTE's levels are at 1/4, 1/2 and 1 of the image).
TEXTURE_BLOCKS = (1, 2, 4)


def _grid_layout(ref_sizes: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Rows of each reference's zero-bordered block grid in the block table, and where each starts."""
    grid_sizes = [(ref_height + 2) * (ref_width + 2) for ref_height, ref_width in ref_sizes]
    return grid_sizes, list(itertools.accumulate(grid_sizes[:-1], initial=0))


class ChosenBlocks(NamedTuple):
    """Where the Ref patch chosen at each LR position lies in the block tables (see :func:`block_table`).

    On the LR grid bordered by one position on each side, so any window of the grid can read the
    choices of its neighbours just outside it:
    rows: (B, h+2, w+2) int64, the table row of the chosen Ref block (-1 on the border: no patch);
    widths: (B, h+2, w+2) int64, the bordered width Wi + 2 of the chosen reference (0 on the border);
    zero_rows: (B, 1, 1) int64, per batch item a row of the table that is always zero.
    """

    rows: torch.Tensor
    widths: torch.Tensor
    zero_rows: torch.Tensor


def chosen_blocks(
    hard_index: torch.Tensor, ref_sizes: Sequence[tuple[int, int]], lr_size: tuple[int, int]
) -> ChosenBlocks:
    """The table rows of the Ref blocks chosen by ``hard_index`` (B, h*w); ref_sizes: (Hi, Wi) lv3."""
    reference, position = split_unchecked(hard_index, ref_sizes)
    batch = reference.size(0)
    height, width = lr_size
    device = reference.device
    grid_sizes, grid_starts = _grid_layout(ref_sizes)

    # Row 0 of a batch item's table is the top-left border block of reference 0: always zero.
    zero_rows = torch.arange(batch, device=device).view(batch, 1, 1) * sum(grid_sizes)
    chosen = position.view(batch, height, width)
    if len(ref_sizes) == 1:
        chosen_width = torch.full_like(chosen, ref_sizes[0][1])
        grid_start = torch.zeros_like(chosen)
    else:
        widths = device_ints([ref_width for _, ref_width in ref_sizes], device)
        chosen_width = widths[reference].view(batch, height, width)
        grid_start = device_ints(grid_starts, device)[reference].view(batch, height, width)
    padded_width = chosen_width + 2
    # Row of the chosen Ref block for each LR position, on the LR grid bordered by -1.
    rows = F.pad(
        zero_rows + grid_start + (chosen // chosen_width + 1) * padded_width + chosen % chosen_width + 1,
        (1,) * 4,
        value=-1,
    )
    return ChosenBlocks(rows, F.pad(padded_width, (1,) * 4), zero_rows)


def window_rows(chosen: ChosenBlocks, window: tuple[int, int, int, int]) -> list[torch.Tensor]:
    """Rows of the block tables that the official fold sums, per offset, for a window of the LR grid.

    window: (top, left, height, width) of LR positions. Returns nine (B*height*width,) int64
    tensors, one per offset d in {-1, 0, 1}^2 (row-major): for output block q of the window, the
    row of block d of the patch chosen at q - d, i.e. Ref block position(q - d) + d of
    reference(q - d) (a zero border block where that falls outside the reference); a zero row where
    q - d is outside the LR grid (not merely outside the window: the whole grid's choices are read,
    so a window's textures equal the same positions of the whole grid's). The same rows serve every
    level: the tables have one row per lv3 position whatever the block size.
    """
    top, left, height, width = window
    gathered_rows = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            # The neighbour q - d of every output block q, and the row width of the reference it chose.
            region = (
                slice(None),
                slice(top + 1 - dy, top + 1 - dy + height),
                slice(left + 1 - dx, left + 1 - dx + width),
            )
            source = chosen.rows[region]
            # Outside the LR grid nothing lands: read the zero corner block instead.
            gathered_rows.append(
                torch.where(source >= 0, source + dy * chosen.widths[region] + dx, chosen.zero_rows).flatten()
            )
    return gathered_rows


def empty_block_table(
    like: torch.Tensor, batch: int, channels: int, ref_sizes: Sequence[tuple[int, int]], block: int
) -> torch.Tensor:
    """A zero block table (see :func:`block_table`) for values of ``channels`` x s x s blocks, of
    ``like``'s dtype and device: (B * sum((Hi+2)*(Wi+2)), C*s*s)."""
    grid_sizes, _ = _grid_layout(ref_sizes)
    return like.new_zeros(batch * sum(grid_sizes), channels * block * block)


def fill_block_table(
    table: torch.Tensor,
    value: torch.Tensor,
    ref_sizes: Sequence[tuple[int, int]],
    number: int,
    block: int,
    first_row: int = 0,
) -> None:
    """Writes rows of reference ``number``'s blocks into ``table`` (made by :func:`empty_block_table`).

    value: (B, C, s*n, s*Wi), the Ref features of lv3 rows [first_row, first_row + n) of that
    reference (s = ``block``), so a table can be filled strip by strip. Through views: no full-size
    temporary.
    """
    batch, channels = value.shape[:2]
    grid_sizes, grid_starts = _grid_layout(ref_sizes)
    ref_height, ref_width = ref_sizes[number]
    start, size = grid_starts[number], grid_sizes[number]
    ref_blocks = value.unflatten(3, (ref_width, block)).unflatten(2, (-1, block))  # B,C,n,s,Wi,s
    rows = ref_blocks.size(2)
    # Slicing, not split(): autograd refuses in-place writes into views from multi-view ops.
    bordered = table.view(batch, -1, table.size(-1))[:, start : start + size].unflatten(
        1, (ref_height + 2, ref_width + 2)
    )
    bordered[:, 1 + first_row : 1 + first_row + rows, 1:-1].unflatten(-1, (channels, block, block)).copy_(
        ref_blocks.permute(0, 2, 4, 1, 3, 5)
    )


def block_table(
    values: Sequence[torch.Tensor], ref_sizes: Sequence[tuple[int, int]], block: int
) -> torch.Tensor:
    """Every reference as a zero-bordered grid of s x s blocks, one row of C*s*s values per block.

    values: R tensors (B, C, s*Hi, s*Wi); returns (B * sum((Hi+2)*(Wi+2)), C*s*s): per batch item,
    reference 0's bordered grid row-major, then reference 1's, ... Each reference's border is its
    unfold padding.
    """
    batch, channels = values[0].shape[:2]
    table = empty_block_table(values[0], batch, channels, ref_sizes, block)
    for number, value in enumerate(values):
        fill_block_table(table, value, ref_sizes, number, block)
    return table


def transfer_window(
    table: torch.Tensor, rows: Sequence[torch.Tensor], batch: int, size: tuple[int, int], block: int
) -> torch.Tensor:
    """The official unfold-gather-fold of one level over a window, as nine gathers of s x s blocks.

    table: a :func:`block_table` of C x s x s blocks (s = ``block``); rows: the nine row tensors of
    :func:`window_rows` for a window of ``size`` (height, width) LR positions; returns
    (B, C, s*height, s*width). Output block q is the sum over the offsets d in {-1, 0, 1}^2 of block d
    of the patch chosen at q - d (read from the reference chosen there, with that reference's zero
    border), divided by 9.
    """
    return _unblock(_sum_of_gathers(table, rows), batch, size, block)


def _sum_of_gathers(table: torch.Tensor, rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of the table rows named by each of the nine row tensors: (N, C*s*s)."""
    # Out-of-place gathers summed into a plain tensor: cheap to differentiate (no in-place view writes).
    transferred_rows = table.index_select(0, rows[0])
    for offset_rows in rows[1:]:
        transferred_rows += table.index_select(0, offset_rows)
    return transferred_rows


def _unblock(transferred_rows: torch.Tensor, batch: int, size: tuple[int, int], block: int) -> torch.Tensor:
    """(B*h*w, C*s*s) summed blocks -> (B, C, s*h, s*w) feature map, divided by the fold's 9."""
    height, width = size
    channels = transferred_rows.size(1) // (block * block)
    transferred = transferred_rows.view(batch, height, width, channels, block, block).permute(
        0, 3, 1, 4, 2, 5
    )
    return transferred.reshape(batch, channels, block * height, block * width).div_(_FOLD_DIVISOR)


def transfer_grid(
    values: Sequence[torch.Tensor],
    gathered_rows: Sequence[torch.Tensor],
    ref_sizes: Sequence[tuple[int, int]],
    lr_size: tuple[int, int],
    block: int,
) -> torch.Tensor:
    """:func:`transfer_window` over the whole LR grid, the table built from ``values`` (R tensors
    (B, C, s*Hi, s*Wi)) and freed before the output is laid out."""
    table = block_table(values, ref_sizes, block)
    transferred_rows = _sum_of_gathers(table, gathered_rows)
    del table  # the Ref copy is no longer needed: free it before the output copy below
    return _unblock(transferred_rows, values[0].size(0), lr_size, block)
