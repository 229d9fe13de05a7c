"""The plan of a budgeted forward: whether and how to tile, from the image sizes, the network and a
budget in bytes, with the memory footprint model it is estimated from."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from ttsr_lightning.budgeted.memory import format_bytes
from ttsr_lightning.budgeted.receptive_field import lte_halo, main_net_receptive_field
from ttsr_lightning.models.block_transfer import TEXTURE_BLOCKS
from ttsr_lightning.models.generator import TTSRGenerator
from ttsr_lightning.models.lean_search_transfer import LeanSearchTransfer
from ttsr_lightning.models.patch_search import default_search_tile_bytes, search_tile_bytes_per_position

# LR pixels of context around each main-network tile when the whole image does not fit. The paper's
# network reaches 100 LR pixels (main_net_receptive_field). Measured on photographs with random weights
# (benchmarks/tiling.py, benchmarks/RESULTS.md): the SR deviates from the untiled one by 3.4e-4 in [0, 1]
# units at a halo of 8 (under the 8-bit step 1.96e-3), 4.4e-7 at 16, and by float rounding only (6e-8)
# from 20 on. 32 leaves a margin for trained weights, which may carry context farther than a random
# initialisation does (measure them with benchmarks/tiling.py --ckpt); it costs ~13 % more
# main-network work for a 1080p SR under 4 GiB. evaluate and infer take another as ``halo=``.
DEFAULT_HALO = 32


def parse_halo(value: object, key: str = "halo") -> int:
    """A configured halo: an integer >= 0 (LR pixels; more than the receptive field changes nothing).
    Raises ValueError naming ``key`` and what is expected."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"{key}: expected an integer >= 0 (LR pixels of context around each main-network tile), "
            f"got {value!r}"
        )
    return value


_ELEMENT_BYTES = 4  # counted in float32, an upper bound under autocast
# Output-resolution maps of n_feats channels alive at once in the main network without autograd (the
# finest scale's exchange and merge: input, concatenation of three, convolution), with the coarser
# branches and a margin.
_MAIN_NET_MAPS_ALIVE = 8
# Bytes per LR position of what lives through the whole call: the SR (3 x 16 floats), S, the hard
# attention and the chosen block rows (int64), with a margin.
_GLOBAL_BYTES_PER_LR_POSITION = 320
# The smallest tile core worth planning (LR pixels): below it the halos cost more than the tiles.
_MIN_TILE = 8


Window = tuple[int, int, int, int]  # top, left, height, width in LR pixels


class MemoryBudgetError(ValueError):
    """The images cannot be super-resolved within the memory budget (the message says what needs what)."""


class ForwardPlan(NamedTuple):
    """How :func:`budgeted_forward` runs; sizes in LR pixels.

    lr_size: (h, w) the plan is for.
    tile: (rows, cols) of a main-network tile's core; ``lr_size`` when untiled.
    halo: LR pixels of context around each tile (0 when untiled).
    strip_rows: lv3 rows per LTE strip (at least the tallest image's: one pass per image).
    search_tile_bytes: memory of one relevance tile, or None for the search's own default.
    estimated_bytes: the estimated peak memory growth of the call.
    budget: the budget planned for, in bytes (None: none).
    """

    lr_size: tuple[int, int]
    tile: tuple[int, int]
    halo: int
    strip_rows: int
    search_tile_bytes: int | None
    estimated_bytes: int
    budget: int | None

    @property
    def tiled(self) -> bool:
        """Whether the main network runs in more than one tile."""
        return self.tile != self.lr_size

    def describe(self) -> str:
        """One line for a log: untiled, or the tiles and halo, the strips, the estimate and the budget."""
        height, width = self.lr_size
        budget = "no budget" if self.budget is None else f"budget {format_bytes(self.budget)}"
        estimate = f"estimated peak {format_bytes(self.estimated_bytes)} ({budget})"
        if not self.tiled:
            return f"LR {width}x{height}: untiled, {estimate}"
        count = math.ceil(height / self.tile[0]) * math.ceil(width / self.tile[1])
        return (
            f"LR {width}x{height}: {count} main-network tiles of {self.tile[1]}x{self.tile[0]} LR px with a "
            f"halo of {self.halo}, LTE strips of {self.strip_rows} lv3 rows, {estimate}"
        )


class _Footprint(NamedTuple):
    """Estimated memory of each step of :func:`budgeted_forward` for given image sizes (bytes).

    batch; lr: (h, w); refs_lv3: (Hi, Wi) lv3 positions of each reference (none without texture
    transfer); n_feats: the main network's channels; lte_channels: the LTE's (lv1, lv2, lv3) channels
    and lte_halo its strips' halo (:func:`lte_halo`; zeros without texture transfer).
    """

    batch: int
    lr: tuple[int, int]
    refs_lv3: list[tuple[int, int]]
    n_feats: int
    lte_channels: tuple[int, int, int]
    lte_halo: int

    @classmethod
    def of(
        cls,
        generator: TTSRGenerator,
        batch: int,
        lr_size: tuple[int, int],
        ref_sizes: Sequence[tuple[int, int]],
    ) -> _Footprint:
        """The footprint of ``generator`` on these sizes (ref_sizes in pixels), its widths read off
        its modules."""
        lte, n_feats = generator.lte, generator.main_net.n_feats
        if lte is None:
            return cls(batch, lr_size, [], n_feats, (0, 0, 0), 0)
        refs_lv3 = [(height // 4, width // 4) for height, width in ref_sizes]
        return cls(batch, lr_size, refs_lv3, n_feats, lte.channels, lte_halo(lte))

    @property
    def textures(self) -> bool:
        return bool(self.refs_lv3)

    @property
    def feature_channels(self) -> int:
        """Channels of the lv3 features searched (query, keys)."""
        return self.lte_channels[2]

    @property
    def table_values_per_lv3(self) -> int:
        """Floats per reference lv3 position of the three value block tables (lv3, lv2 2x2, lv1 4x4
        blocks: 1,792 for the paper's LTE); as many per LR position in a window's textures."""
        levels = zip(self.lte_channels[::-1], TEXTURE_BLOCKS, strict=True)
        return sum(channels * block * block for channels, block in levels)

    @property
    def lte_channels_alive(self) -> int:
        """Channels of image-sized maps alive at once inside an LTE pass: lv1 and the next
        convolution's output (conv1_2 in VGG19), two maps of lv1's width, and the pooling of the
        latter (a quarter of one), with a margin: 2.5 lv1 widths (160 for the paper's LTE)."""
        return self.lte_channels[0] * 5 // 2

    @property
    def tallest(self) -> int:
        """lv3 rows of the tallest image: a strip this tall is one pass per image."""
        return max([self.lr[0]] + [height for height, _ in self.refs_lv3])

    def lte_strip(self, strip_rows: int) -> int:
        """An LTE pass over a strip of ``strip_rows`` lv3 rows of the widest image, its halo included."""
        if not self.textures:
            return 0
        widest = 4 * max([self.lr[1]] + [width for _, width in self.refs_lv3])
        rows = 4 * self.tallest if strip_rows >= self.tallest else 4 * strip_rows + 2 * self.lte_halo
        return self.batch * rows * widest * self.lte_channels_alive * _ELEMENT_BYTES

    def strip_rows_within(self, available: int) -> int:
        """The most lv3 rows per LTE strip that fit ``available`` bytes (0 when none does)."""
        if self.lte_strip(self.tallest) <= available:
            return self.tallest
        per_row = self.lte_strip(2) - self.lte_strip(1)
        return max(0, min(self.tallest - 1, (available - self.lte_strip(0)) // per_row))

    def query(self, strip_rows: int) -> int:
        """lv3 of the LR rows searched at once: all of them, or a strip and the row on each side."""
        rows = self.lr[0] if strip_rows >= self.lr[0] else strip_rows + 2
        return self.batch * self.feature_channels * rows * self.lr[1] * _ELEMENT_BYTES

    def keys(self) -> int:
        return sum(self.batch * self.feature_channels * h * w * _ELEMENT_BYTES for h, w in self.refs_lv3)

    def tables(self) -> int:
        lv3_positions = sum((h + 2) * (w + 2) for h, w in self.refs_lv3)
        return self.batch * lv3_positions * self.table_values_per_lv3 * _ELEMENT_BYTES

    def resident(self) -> int:
        """What lives through the main-network tiles: the SR, S, hard attention, the value tables."""
        return self.batch * self.lr[0] * self.lr[1] * _GLOBAL_BYTES_PER_LR_POSITION + self.tables()

    def search(self, strip_rows: int, tile_bytes: int) -> int:
        """The query (and its zero-bordered copy), every key, the largest bordered key, one tile."""
        if not self.textures:
            return 0
        largest_key = max(
            self.batch * self.feature_channels * (h + 2) * (w + 2) * _ELEMENT_BYTES for h, w in self.refs_lv3
        )
        query = 2 * self.query(strip_rows)
        return query + self.keys() + largest_key + tile_bytes + self.resident() - self.tables()

    def window(self, positions: int) -> int:
        """The main network on a window of LR positions, its textures and their gather indices."""
        maps = _MAIN_NET_MAPS_ALIVE * self.n_feats * 16
        textures = self.table_values_per_lv3 + 9 * 2 if self.textures else 0  # + nine int64 row indices
        return self.batch * positions * (maps + textures) * _ELEMENT_BYTES

    def peak(self, strip_rows: int, tile_bytes: int, window_positions: int) -> int:
        """The largest of the call's steps: LTE strips, search, value tables, main-network tiles."""
        steps = [self.resident() + self.window(window_positions)]
        if self.textures:
            strip = self.lte_strip(strip_rows)
            steps += [
                self.query(strip_rows) + self.keys() + strip,  # LTE passes before the search
                self.search(strip_rows, tile_bytes),
                self.resident() + strip,  # LTE of the references, into the tables
            ]
        return max(steps)


def tile_spans(size: int, count: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``count`` tiles over ``size`` positions: (core start, core stop, window start, window stop)."""
    core = math.ceil(size / count)
    return [
        (start, min(size, start + core), max(0, start - halo), min(size, start + core + halo))
        for start in range(0, size, core)
    ]


def _tile_grid(size: tuple[int, int], halo: int, max_window_positions: int) -> tuple[int, int] | None:
    """The tile core (rows, cols) whose windows fit ``max_window_positions`` and cost the least
    computation (the sum of the windows' areas); None when no core of _MIN_TILE LR pixels fits."""
    height, width = size
    best: tuple[int, tuple[int, int]] | None = None
    for row_count in range(1, height + 1):
        rows = tile_spans(height, row_count, halo)
        if rows[0][1] - rows[0][0] < min(_MIN_TILE, height):
            break
        max_cols = max_window_positions // max(stop - start for *_, start, stop in rows)
        col_count = 1 if width <= max_cols else math.ceil(width / max(1, max_cols - 2 * halo))
        while col_count <= width:
            cols = tile_spans(width, col_count, halo)
            if max(stop - start for *_, start, stop in cols) <= max_cols:
                break
            col_count += 1
        else:
            continue
        if cols[0][1] - cols[0][0] < min(_MIN_TILE, width):
            continue
        cost = sum(stop - start for *_, start, stop in rows) * sum(stop - start for *_, start, stop in cols)
        if best is None or cost < best[0]:
            best = (cost, (rows[0][1] - rows[0][0], cols[0][1] - cols[0][0]))
    return None if best is None else best[1]


def plan_forward(
    generator: TTSRGenerator,
    lr_size: tuple[int, int],
    ref_sizes: Sequence[tuple[int, int]],
    max_memory: int | None,
    batch: int = 1,
    halo: int = DEFAULT_HALO,
) -> ForwardPlan:
    """How to run :func:`budgeted_forward` on these sizes within ``max_memory`` bytes of peak growth.

    lr_size: (h, w) LR pixels; ref_sizes: (H, W) pixels of each reference (multiples of 4; ignored
    without texture transfer); max_memory: the budget in bytes, None for none. Untiled whenever the
    whole image fits (exact: the generator's forward); else LTE strips and main-network tiles as
    large as fit (the fewest halos), with ``halo`` LR pixels of context (at most the receptive
    field). With the ``"reference"`` search-transfer (the official formulation, a test oracle) always
    untiled: the budget is not applied. Raises :class:`MemoryBudgetError` when even the smallest
    strips, relevance tile or main-network tiles do not fit, naming what takes the memory.
    """
    height, width = lr_size
    textures = generator.lte is not None
    footprint = _Footprint.of(generator, batch, lr_size, ref_sizes)
    default_tile = default_search_tile_bytes(next(generator.parameters()).device)
    whole = footprint.peak(footprint.tallest, default_tile, height * width)
    untiled = ForwardPlan(lr_size, lr_size, 0, footprint.tallest, None, whole, max_memory)
    if max_memory is None or whole <= max_memory or not lean_or_base(generator):
        return untiled

    net = generator.main_net
    halo = min(halo, main_net_receptive_field(net.num_res_blocks, net.csfi, net.use_hard_attention))
    smallest_window = footprint.window(min(height, _MIN_TILE + 2 * halo) * min(width, _MIN_TILE + 2 * halo))
    if footprint.resident() + smallest_window > max_memory:
        raise MemoryBudgetError(_tables_too_large(footprint, ref_sizes, max_memory, smallest_window))
    strip_rows, tile_bytes = footprint.tallest, 0
    if textures:
        # LTE strips as tall as fit beside the keys (or the tables), then as short as the search needs.
        strip_rows = footprint.strip_rows_within(max_memory - max(footprint.keys(), footprint.resident()))
        row_bytes = max(search_tile_bytes_per_position(batch, size) for size in footprint.refs_lv3)
        while strip_rows > 1 and (
            footprint.search(strip_rows, row_bytes) > max_memory
            or footprint.query(strip_rows) + footprint.keys() + footprint.lte_strip(strip_rows) > max_memory
        ):
            strip_rows //= 2
        tile_bytes = min(default_tile, max_memory - footprint.search(strip_rows, 0))
        if strip_rows < 1 or tile_bytes < row_bytes:
            needed = max(
                footprint.search(max(1, strip_rows), row_bytes), footprint.keys() + footprint.lte_strip(1)
            )
            raise MemoryBudgetError(_search_too_large(footprint, ref_sizes, max_memory, needed))
    tile = _tile_grid(lr_size, halo, (max_memory - footprint.resident()) // footprint.window(1))
    if tile is None:
        raise MemoryBudgetError(_tables_too_large(footprint, ref_sizes, max_memory, smallest_window))
    halo = 0 if tile == lr_size else halo
    window = max(h * w for (*_, h, w) in (window for _, window in tile_windows(lr_size, tile, halo)))
    estimate = footprint.peak(strip_rows, tile_bytes, window)
    return ForwardPlan(
        lr_size, tile, halo, strip_rows, tile_bytes if textures else None, estimate, max_memory
    )


def plan_for_inputs(
    generator: TTSRGenerator,
    lr: torch.Tensor,
    ref: torch.Tensor | Sequence[torch.Tensor],
    max_memory: int | None,
    halo: int = DEFAULT_HALO,
) -> ForwardPlan:
    """:func:`plan_forward` for the tensors :func:`budgeted_forward` will get: lr (B, 3, h, w) and one
    reference (B, 3, H, W) or a list of them."""
    refs = [ref] if isinstance(ref, torch.Tensor) else ref
    lr_size = (lr.size(2), lr.size(3))
    return plan_forward(
        generator, lr_size, [(image.size(2), image.size(3)) for image in refs], max_memory, lr.size(0), halo
    )


def lean_or_base(generator: TTSRGenerator) -> bool:
    """Whether the generator's search (if any) is the lean one, which the tiled path reproduces."""
    return generator.search_transfer is None or isinstance(generator.search_transfer, LeanSearchTransfer)


def _references(ref_sizes: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{width}x{height}" for height, width in ref_sizes)


def _tables_too_large(
    footprint: _Footprint, ref_sizes: Sequence[tuple[int, int]], budget: int, smallest_window: int
) -> str:
    height, width = footprint.lr
    table_bytes = footprint.table_values_per_lv3 * _ELEMENT_BYTES // 16
    references = (
        f"the reference(s) {_references(ref_sizes)} need {format_bytes(footprint.tables())} for their "
        f"texture tables (~{table_bytes} bytes per reference pixel), "
        if footprint.textures
        else ""
    )
    return (
        f"memory budget {format_bytes(budget)} too small: {references}the LR {width}x{height} needs "
        f"{format_bytes(footprint.resident() - footprint.tables())} for its output and attention, and the "
        f"smallest main-network tile {format_bytes(smallest_window)}; raise the budget or use smaller images"
    )


def _search_too_large(
    footprint: _Footprint, ref_sizes: Sequence[tuple[int, int]], budget: int, needed: int
) -> str:
    height, width = footprint.lr
    feature_bytes = footprint.feature_channels * _ELEMENT_BYTES // 16
    return (
        f"memory budget {format_bytes(budget)} too small: the search of the LR {width}x{height} against "
        f"the reference(s) {_references(ref_sizes)} needs {format_bytes(needed)} (the references' lv3 "
        f"features, {feature_bytes} bytes per reference pixel, beside a strip of the LR's and at least "
        "one row of relevance); raise the budget or use a smaller reference"
    )


def tile_windows(size: tuple[int, int], tile: tuple[int, int], halo: int) -> list[tuple[Window, Window]]:
    """(core, window) of every tile, row-major; one tile (the whole grid) when ``tile`` covers it."""
    height, width = size
    rows = tile_spans(height, math.ceil(height / tile[0]), halo)
    cols = tile_spans(width, math.ceil(width / tile[1]), halo)
    return [
        ((top, left, bottom - top, right - left), (w_top, w_left, w_bottom - w_top, w_right - w_left))
        for top, bottom, w_top, w_bottom in rows
        for left, right, w_left, w_right in cols
    ]
