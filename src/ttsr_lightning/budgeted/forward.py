"""Super-resolution of any image size within a memory budget: the generator's forward without autograd,
lean, and in tiles when the whole image does not fit.

:func:`plan_forward` decides, from the image sizes and a budget in bytes, how
:func:`budgeted_forward` runs; :class:`ForwardPlan` says what it chose. Without a budget, or when the
whole image fits, the plan is *untiled*: the generator's forward step by step (its own LTE, search and
main network) with every map dropped as soon as it is used, and the same outputs, bit for bit (SR, S,
hard attention; the textures T are not returned). Otherwise:

- the search stays global: S and the hard attention are those of the whole LR image against every
  reference (the lean search-transfer's own search). The LTE runs in row strips with a halo as wide
  as its layers reach (:func:`lte_halo`: 12 pixels for the paper's LTE), which gives the same
  features; the relevance tiles are sized from the budget;
- the Ref value features are kept as the transfer's block tables (1,792 floats per reference lv3
  position for the paper's LTE), filled strip by strip;
- the main network runs on overlapping tiles of the LR grid: each tile with ``halo`` LR pixels of
  context on its inner sides, its textures transferred from the global hard attention (exactly the
  whole image's textures at those positions, the official fold's dimmed ring only at the true image
  border), and only its core kept. The main network's receptive field is large
  (:func:`main_net_receptive_field`: 100 LR pixels for the paper's network), so a tile is exact only
  with a halo that wide; with a smaller one the output near tile seams deviates by what the far
  context would have added. :data:`DEFAULT_HALO` (32) keeps that deviation at float rounding for the
  networks measured (``benchmarks/tiling.py``), far below what 8-bit output can show.

Memory: the plan bounds the estimated peak growth of the call (its outputs included) by the budget,
from a per-pixel count of the maps alive at each step (float32, with a margin). What must be global
is linear in the image sizes and small: per LR position ~0.3 KB (S, hard attention, the SR output)
and, during the search only, ~2 KB of LR features; per reference pixel ~0.5 KB (search keys and
value tables). A reference whose tables alone exceed the budget is refused (:class:`MemoryBudgetError`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch

from ttsr_lightning.budgeted.plan import ForwardPlan, Window, lean_or_base, tile_windows
from ttsr_lightning.budgeted.receptive_field import lte_halo
from ttsr_lightning.models.block_transfer import (
    TEXTURE_BLOCKS,
    ChosenBlocks,
    chosen_blocks,
    empty_block_table,
    fill_block_table,
    transfer_window,
    window_rows,
)
from ttsr_lightning.models.generator import GeneratorOutput, TTSRGenerator, check_lr_up, reference_lists
from ttsr_lightning.models.lean_search_transfer import LeanSearchTransfer
from ttsr_lightning.models.lte import LTE


@torch.no_grad()
def budgeted_forward(
    generator: TTSRGenerator,
    lr: torch.Tensor,
    lr_up: torch.Tensor,
    ref: torch.Tensor | Sequence[torch.Tensor],
    ref_down_up: torch.Tensor | Sequence[torch.Tensor],
    plan: ForwardPlan,
) -> GeneratorOutput:
    """The generator's forward, without autograd, as ``plan`` says (see the module docstring).

    Inputs as :meth:`TTSRGenerator.forward` (one reference or a list). Returns
    :class:`GeneratorOutput` with ``sr``, ``soft_attention`` and ``hard_index`` (None without texture
    transfer) and no textures (``t_lv3``, ``t_lv2``, ``t_lv1`` None: at full resolution they would be
    the largest maps of the call). Untiled, the three equal the forward's bit for bit (with
    ``batched_extractor=False``, the default: here the LTE always runs per image).
    """
    check_lr_up(lr, lr_up)
    batch, _, height, width = lr.shape
    if plan.lr_size != (height, width):
        raise ValueError(f"the plan is for an LR of {plan.lr_size} (h, w), got {(height, width)}")
    if not lean_or_base(generator):
        return generator(lr, lr_up, ref, ref_down_up)._replace(t_lv3=None, t_lv2=None, t_lv1=None)
    attention = global_attention(generator, lr_up, ref, ref_down_up, plan)
    tiles = tile_windows((height, width), plan.tile, plan.halo)
    sr = None
    for number, (core, window) in enumerate(tiles):
        tile_sr = window_sr(generator, lr, attention, window, release_tables=number == len(tiles) - 1)
        sr = _place(sr, tile_sr, core, window, (height, width))
    assert sr is not None
    sr = generator.output_image(sr, lr_up)
    if attention is None:
        return GeneratorOutput(sr, None, None, None, None, None)
    return GeneratorOutput(sr, attention.soft_attention, attention.hard_index, None, None, None)


class GlobalAttention(NamedTuple):
    """What every tile of the main network reads: the search over the whole LR image.

    soft_attention: (B, 1, h, w) S; hard_index: (B, h*w); chosen: where each position's Ref block
    lies in the tables; tables: the references' value block tables of lv3, lv2, lv1 (a list, emptied
    by :func:`window_sr` with ``release_tables`` once the last tile's textures are made).
    """

    soft_attention: torch.Tensor
    hard_index: torch.Tensor
    chosen: ChosenBlocks
    tables: list[torch.Tensor]


@torch.no_grad()
def global_attention(
    generator: TTSRGenerator,
    lr_up: torch.Tensor,
    ref: torch.Tensor | Sequence[torch.Tensor],
    ref_down_up: torch.Tensor | Sequence[torch.Tensor],
    plan: ForwardPlan,
) -> GlobalAttention | None:
    """The LTE (in strips), the lean search-transfer's search (:meth:`LeanSearchTransfer.tiled_search`,
    in the plan's relevance tiles) and the value tables, as ``plan`` says; None without texture
    transfer. Needs the lean search-transfer."""
    if generator.lte is None or generator.search_transfer is None:
        return None
    assert isinstance(generator.search_transfer, LeanSearchTransfer)
    batch, _, height, width = lr_up.shape
    height, width = height // 4, width // 4
    refs, refs_down_up = reference_lists(ref, ref_down_up, batch)
    lte, search = generator.lte, generator.search_transfer.tiled_search
    keys = [_lv3_in_strips(lte, image, plan.strip_rows) for image in refs_down_up]
    if plan.strip_rows >= height:
        best_relevance, hard_index = search(lte(lr_up)[2], keys, plan.search_tile_bytes)
    else:
        # LR strip by strip: only a strip's query features exist at a time. A strip's 3x3 patches
        # reach one lv3 row beyond it: searched with those rows, whose own results are dropped.
        best_relevance = lr_up.new_empty(batch, height, width, dtype=torch.float32)
        hard_index = torch.empty(batch, height, width, dtype=torch.int64, device=lr_up.device)
        for first in range(0, height, plan.strip_rows):
            last = min(height, first + plan.strip_rows)
            top, bottom = max(0, first - 1), min(height, last + 1)
            best, index = search(_lv3_rows(lte, lr_up, top, bottom), keys, plan.search_tile_bytes)
            rows = slice(first - top, last - top)
            best_relevance[:, first:last] = best.view(batch, bottom - top, width)[:, rows]
            hard_index[:, first:last] = index.view(batch, bottom - top, width)[:, rows]
        best_relevance, hard_index = best_relevance.flatten(1), hard_index.flatten(1)
    del keys
    ref_sizes = [(image.size(2) // 4, image.size(3) // 4) for image in refs]
    chosen = chosen_blocks(hard_index, ref_sizes, (height, width))
    tables = _value_tables(lte, refs, ref_sizes, plan.strip_rows)
    return GlobalAttention(best_relevance.view(batch, 1, height, width), hard_index, chosen, tables)


@torch.no_grad()
def window_sr(
    generator: TTSRGenerator,
    lr: torch.Tensor,
    attention: GlobalAttention | None,
    window: Window,
    release_tables: bool = False,
) -> torch.Tensor:
    """The main network on one window (top, left, height, width) of the LR grid: (B, 3, 4*height,
    4*width). Its textures are the whole grid's at those positions, each made when its stage fuses it
    and dropped after; with ``release_tables`` the attention's tables are emptied once they are made
    (the last tile)."""
    if attention is None:
        return generator.synthesise(_crop(lr, window))
    textures = _WindowTextures(attention.tables, attention.chosen, window, release_tables)
    return generator.synthesise(
        _crop(lr, window),
        _crop(attention.soft_attention, window),
        *(textures.maker(level) for level in range(len(TEXTURE_BLOCKS))),
    )


class _WindowTextures:
    """The textures of one window of the LR grid, each made (from the value tables and the global
    hard attention) when the main network asks for it. With ``release`` the tables are emptied once
    all three are made: the last tile needs them no more."""

    def __init__(
        self, tables: list[torch.Tensor], chosen: ChosenBlocks, window: Window, release: bool
    ) -> None:
        self.tables, self.release, self.pending = tables, release, len(TEXTURE_BLOCKS)
        self.rows = window_rows(chosen, window)
        self.batch, self.size = chosen.rows.size(0), (window[2], window[3])

    def maker(self, level: int) -> Callable[[], torch.Tensor]:
        """The function making texture ``level`` (0: T_lv3, 1: T_lv2, 2: T_lv1)."""
        return functools.partial(self._make, level)

    def _make(self, level: int) -> torch.Tensor:
        block = TEXTURE_BLOCKS[level]
        texture = transfer_window(self.tables[level], self.rows, self.batch, self.size, block)
        self.pending -= 1
        if self.release and not self.pending:
            self.tables.clear()
        return texture


def _crop(lr_scale: torch.Tensor, window: Window) -> torch.Tensor:
    """The window of an LR-scale map (B, C, h, w) (a view)."""
    top, left, height, width = window
    return lr_scale[:, :, top : top + height, left : left + width]


def _place(
    sr: torch.Tensor | None, tile_sr: torch.Tensor, core: Window, window: Window, lr_size: tuple[int, int]
) -> torch.Tensor:
    """Copies the core of a tile's SR (B, 3, 4*window) into the SR (made on the first tile)."""
    if sr is None and core == window and core[2:] == lr_size:
        return tile_sr  # untiled: the main network's output is the SR
    if sr is None:
        sr = tile_sr.new_empty(tile_sr.size(0), tile_sr.size(1), 4 * lr_size[0], 4 * lr_size[1])
    top, left, height, width = core
    offset_top, offset_left = 4 * (top - window[0]), 4 * (left - window[1])
    sr[:, :, 4 * top : 4 * (top + height), 4 * left : 4 * (left + width)] = tile_sr[
        :, :, offset_top : offset_top + 4 * height, offset_left : offset_left + 4 * width
    ]
    return sr


def _lte_rows(lte: LTE, image: torch.Tensor, first: int, last: int) -> tuple[torch.Tensor, ...]:
    """(lv1, lv2, lv3) of lv3 rows [first, last) of ``image`` (B, 3, H, W), from one LTE pass with
    :func:`lte_halo` rows of context above and below (none at the image border): the whole image's
    features."""
    halo = lte_halo(lte)
    top, bottom = max(0, 4 * first - halo), min(image.size(2), 4 * last + halo)
    levels = lte(image[:, :, top:bottom])
    return tuple(
        level[:, :, (4 * first - top) // scale : (4 * last - top) // scale]
        for level, scale in zip(levels, (1, 2, 4), strict=True)
    )


def _lv3_rows(lte: LTE, image: torch.Tensor, first: int, last: int) -> torch.Tensor:
    """lv3 of lv3 rows [first, last) of ``image`` (see :func:`_lte_rows`)."""
    return _lte_rows(lte, image, first, last)[2]


def _lte_strips(
    lte: LTE, image: torch.Tensor, strip_rows: int
) -> Iterator[tuple[int, tuple[torch.Tensor, ...]]]:
    """The LTE of ``image`` strip by strip: (first lv3 row, (lv1, lv2, lv3) of lv3 rows
    [first, first + strip_rows))."""
    lv3_height = image.size(2) // 4
    for first in range(0, lv3_height, strip_rows):
        yield first, _lte_rows(lte, image, first, min(lv3_height, first + strip_rows))


def _lv3_in_strips(lte: LTE, image: torch.Tensor, strip_rows: int) -> torch.Tensor:
    """LTE lv3 of ``image``: one pass when one strip covers it, else assembled from strips."""
    if strip_rows >= image.size(2) // 4:
        return lte(image)[2]
    lv3: torch.Tensor | None = None
    for first, (_, _, rows) in _lte_strips(lte, image, strip_rows):
        if lv3 is None:
            lv3 = rows.new_empty(rows.size(0), rows.size(1), image.size(2) // 4, rows.size(3))
        lv3[:, :, first : first + rows.size(2)] = rows
    assert lv3 is not None
    return lv3


def _value_tables(
    lte: LTE, refs: Sequence[torch.Tensor], ref_sizes: Sequence[tuple[int, int]], strip_rows: int
) -> list[torch.Tensor]:
    """The block tables of every reference's LTE lv3, lv2, lv1 (in that order), filled strip by strip."""
    tables: list[torch.Tensor] = []
    for number, image in enumerate(refs):
        for first, levels in _lte_strips(lte, image, strip_rows):
            lv3_first_levels = levels[::-1]  # lv3, lv2, lv1
            if not tables:
                tables = [
                    empty_block_table(level, level.size(0), level.size(1), ref_sizes, block)
                    for level, block in zip(lv3_first_levels, TEXTURE_BLOCKS, strict=True)
                ]
            for table, level, block in zip(tables, lv3_first_levels, TEXTURE_BLOCKS, strict=True):
                fill_block_table(table, level, ref_sizes, number, block, first)
    return tables
