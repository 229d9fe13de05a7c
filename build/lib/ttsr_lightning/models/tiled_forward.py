"""Super-resolution of any image size within a memory budget: the generator's forward without autograd,
lean, and in tiles when the whole image does not fit.

:func:`plan_forward` decides, from the image sizes and a budget in bytes, how
:func:`budgeted_forward` runs; :class:`ForwardPlan` says what it chose. Without a budget, or when the
whole image fits, the plan is *untiled*: the generator's forward step by step with every map dropped
as soon as it is used, and the same outputs, bit for bit (SR, S, hard attention; the textures T are
not returned). Otherwise:

- the search stays global: S and the hard attention are those of the whole LR image against every
  reference. The LTE runs in row strips with a halo of 12 pixels (its receptive field reaches 10
  beyond a lv3 block), which gives the same features; the relevance tiles are sized from the budget;
- the Ref value features are kept as the transfer's block tables (1,792 floats per reference lv3
  position), filled strip by strip;
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
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, NamedTuple, TypeAlias

import torch

from ttsr_lightning.models.generator import GeneratorOutput, TTSRGenerator, check_lr_up, reference_lists
from ttsr_lightning.models.lean_search_transfer import (
    ChosenBlocks,
    LeanSearchTransfer,
    chosen_blocks,
    default_search_tile_bytes,
    empty_block_table,
    fill_block_table,
    search,
    search_tile_bytes_per_position,
    transfer_window,
    window_rows,
)
from ttsr_lightning.models.lte import LTE

# LR pixels of context around each main-network tile when the whole image does not fit. The paper's
# network reaches 100 LR pixels (main_net_receptive_field). Measured on photographs with random weights
# (benchmarks/tiling.py, benchmarks/RESULTS.md): the SR deviates from the untiled one by 3.4e-4 in [0, 1]
# units at a halo of 8 (under the 8-bit step 1.96e-3), 4.4e-7 at 16, and by float rounding only (6e-8)
# from 20 on. 32 leaves a margin for trained weights, which may carry context farther than a random
# initialisation does (measure them with benchmarks/tiling.py --ckpt); it costs ~13 % more
# main-network work for a 1080p SR under 4 GiB.
DEFAULT_HALO = 32

# Image pixels of context above and below each LTE strip: the LTE (VGG19 to relu3_1) reaches 10 pixels
# beyond a lv3 block; 12 keeps the strips on the 4-pixel grid of its two poolings (exact features).
LTE_HALO = 12

_ELEMENT_BYTES = 4  # counted in float32, an upper bound under autocast
# Channels of image-sized maps alive at once inside an LTE pass (lv1, conv1_2, its pooling, lv2...), +5 %.
_LTE_CHANNELS_ALIVE = 160
# Floats per reference lv3 position of the three value block tables (lv1 64x4x4, lv2 128x2x2, lv3 256).
_TABLE_VALUES_PER_LV3 = 64 * 16 + 128 * 4 + 256
_FEATURE_CHANNELS = 256  # lv3 features (query, keys)
# Output-resolution maps of n_feats channels alive at once in the main network without autograd (the
# finest scale's exchange and merge: input, concatenation of three, convolution), with the coarser
# branches and a margin.
_MAIN_NET_MAPS_ALIVE = 8
# Bytes per LR position of what lives through the whole call: the SR (3 x 16 floats), S, the hard
# attention and the chosen block rows (int64), with a margin.
_GLOBAL_BYTES_PER_LR_POSITION = 320
# The smallest tile core worth planning (LR pixels): below it the halos cost more than the tiles.
_MIN_TILE = 8


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


def format_bytes(value: int) -> str:
    """'3.50 GiB', '512 MiB'."""
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


# --------------------------------------------------------------------------------------- budgets
# A memory budget as configured: bytes, "auto" (from the device's free memory) or None (no budget).
MemorySetting: TypeAlias = int | Literal["auto"] | None

# Share of the free memory an "auto" budget takes: on CPU of MemAvailable (the process's own
# allocator keeps some freed memory, other processes run); on CUDA of the free memory plus what the
# caching allocator holds unused.
AUTO_FRACTION = {"cpu": 0.6, "cuda": 0.8}
_UNITS = {
    "": 1, "b": 1,
    "k": 2**10, "kib": 2**10, "kb": 10**3,
    "m": 2**20, "mib": 2**20, "mb": 10**6,
    "g": 2**30, "gib": 2**30, "gb": 10**9,
    "t": 2**40, "tib": 2**40, "tb": 10**12,
}  # fmt: skip


def parse_memory_setting(value: object, key: str = "max_memory") -> MemorySetting:
    """A configured budget: ``auto``, None / ``null`` / ``none`` (no budget), a number of bytes, or a
    size with a unit (``4GiB``, ``512MB``, ``1.5G``: K/M/G/T and KiB... are powers of 1024, KB/MB/GB/TB
    of 1000). Raises ValueError naming ``key`` and what is expected."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none")):
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    expected = f"{key}: expected auto, null or a size such as 4GiB, 512MB or a number of bytes, got {value!r}"
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int | float):
        number, unit = float(value), ""
    elif isinstance(value, str) and (
        match := re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", value)
    ):
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ValueError(expected)
    if unit not in _UNITS or not math.isfinite(number):
        raise ValueError(expected)
    size = int(number * _UNITS[unit])
    if size < 2**20:
        raise ValueError(f"{key}: {value!r} is {size} bytes; a budget needs at least 1 MiB")
    return size


def available_memory(device: torch.device) -> int:
    """Bytes free on ``device`` now: CUDA free memory plus the caching allocator's reserved but unused
    bytes; on CPU the kernel's MemAvailable (Linux), else the physical memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        match = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo.read_text(), flags=re.MULTILINE)
        if match:
            return int(match.group(1)) * 1024
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_budget(setting: MemorySetting, device: torch.device, processes: int = 1) -> int | None:
    """The budget in bytes for a setting: ``auto`` is :data:`AUTO_FRACTION` of the device's free
    memory, shared by ``processes`` processes on the same memory (CPU DDP); bytes and None as given."""
    if setting != "auto":
        return setting
    share = AUTO_FRACTION["cuda" if device.type == "cuda" else "cpu"] / max(1, processes)
    return int(share * available_memory(device))


# --------------------------------------------------------------------------------------- receptive field
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


# --------------------------------------------------------------------------------------- planning
class _Footprint(NamedTuple):
    """Estimated memory of each step of :func:`budgeted_forward` for given image sizes (bytes).

    batch; lr: (h, w); refs_lv3: (Hi, Wi) lv3 positions of each reference (none without texture
    transfer); n_feats of the main network.
    """

    batch: int
    lr: tuple[int, int]
    refs_lv3: list[tuple[int, int]]
    n_feats: int

    @property
    def textures(self) -> bool:
        return bool(self.refs_lv3)

    @property
    def tallest(self) -> int:
        """lv3 rows of the tallest image: a strip this tall is one pass per image."""
        return max([self.lr[0]] + [height for height, _ in self.refs_lv3])

    def lte_strip(self, strip_rows: int) -> int:
        """An LTE pass over a strip of ``strip_rows`` lv3 rows of the widest image, its halo included."""
        if not self.textures:
            return 0
        widest = 4 * max([self.lr[1]] + [width for _, width in self.refs_lv3])
        rows = 4 * self.tallest if strip_rows >= self.tallest else 4 * strip_rows + 2 * LTE_HALO
        return self.batch * rows * widest * _LTE_CHANNELS_ALIVE * _ELEMENT_BYTES

    def strip_rows_within(self, available: int) -> int:
        """The most lv3 rows per LTE strip that fit ``available`` bytes (0 when none does)."""
        if self.lte_strip(self.tallest) <= available:
            return self.tallest
        per_row = self.lte_strip(2) - self.lte_strip(1)
        return max(0, min(self.tallest - 1, (available - self.lte_strip(0)) // per_row))

    def query(self, strip_rows: int) -> int:
        """lv3 of the LR rows searched at once: all of them, or a strip and the row on each side."""
        rows = self.lr[0] if strip_rows >= self.lr[0] else strip_rows + 2
        return self.batch * _FEATURE_CHANNELS * rows * self.lr[1] * _ELEMENT_BYTES

    def keys(self) -> int:
        return sum(self.batch * _FEATURE_CHANNELS * h * w * _ELEMENT_BYTES for h, w in self.refs_lv3)

    def tables(self) -> int:
        lv3_positions = sum((h + 2) * (w + 2) for h, w in self.refs_lv3)
        return self.batch * lv3_positions * _TABLE_VALUES_PER_LV3 * _ELEMENT_BYTES

    def resident(self) -> int:
        """What lives through the main-network tiles: the SR, S, hard attention, the value tables."""
        return self.batch * self.lr[0] * self.lr[1] * _GLOBAL_BYTES_PER_LR_POSITION + self.tables()

    def search(self, strip_rows: int, tile_bytes: int) -> int:
        """The query (and its zero-bordered copy), every key, the largest bordered key, one tile."""
        if not self.textures:
            return 0
        largest_key = max(
            self.batch * _FEATURE_CHANNELS * (h + 2) * (w + 2) * _ELEMENT_BYTES for h, w in self.refs_lv3
        )
        query = 2 * self.query(strip_rows)
        return query + self.keys() + largest_key + tile_bytes + self.resident() - self.tables()

    def window(self, positions: int) -> int:
        """The main network on a window of LR positions, its textures and their gather indices."""
        maps = _MAIN_NET_MAPS_ALIVE * self.n_feats * 16
        textures = _TABLE_VALUES_PER_LV3 + 9 * 2 if self.textures else 0  # + nine int64 row indices
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


def _spans(size: int, count: int, halo: int) -> list[tuple[int, int, int, int]]:
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
        rows = _spans(height, row_count, halo)
        if rows[0][1] - rows[0][0] < min(_MIN_TILE, height):
            break
        max_cols = max_window_positions // max(stop - start for *_, start, stop in rows)
        col_count = 1 if width <= max_cols else math.ceil(width / max(1, max_cols - 2 * halo))
        while col_count <= width:
            cols = _spans(width, col_count, halo)
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
    footprint = _Footprint(
        batch,
        (height, width),
        [(h // 4, w // 4) for h, w in ref_sizes] if textures else [],
        generator.config["n_feats"],
    )
    default_tile = default_search_tile_bytes(next(generator.parameters()).device)
    whole = footprint.peak(footprint.tallest, default_tile, height * width)
    untiled = ForwardPlan(lr_size, lr_size, 0, footprint.tallest, None, whole, max_memory)
    if max_memory is None or whole <= max_memory or not _lean_or_base(generator):
        return untiled

    config = generator.config
    halo = min(halo, main_net_receptive_field(config["num_res_blocks"], config["csfi"], textures))
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
    window = max(h * w for (*_, h, w) in (window for _, window in _tiles(lr_size, tile, halo)))
    estimate = footprint.peak(strip_rows, tile_bytes, window)
    return ForwardPlan(
        lr_size, tile, halo, strip_rows, tile_bytes if textures else None, estimate, max_memory
    )


def plan_for_inputs(
    generator: TTSRGenerator,
    lr: torch.Tensor,
    ref: torch.Tensor | Sequence[torch.Tensor],
    max_memory: int | None,
) -> ForwardPlan:
    """:func:`plan_forward` for the tensors :func:`budgeted_forward` will get: lr (B, 3, h, w) and one
    reference (B, 3, H, W) or a list of them."""
    refs = [ref] if isinstance(ref, torch.Tensor) else ref
    lr_size = (lr.size(2), lr.size(3))
    return plan_forward(
        generator, lr_size, [(image.size(2), image.size(3)) for image in refs], max_memory, lr.size(0)
    )


def _lean_or_base(generator: TTSRGenerator) -> bool:
    """Whether the generator's search (if any) is the lean one, which the tiled path reproduces."""
    return generator.search_transfer is None or isinstance(generator.search_transfer, LeanSearchTransfer)


def _references(ref_sizes: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{width}x{height}" for height, width in ref_sizes)


def _tables_too_large(
    footprint: _Footprint, ref_sizes: Sequence[tuple[int, int]], budget: int, smallest_window: int
) -> str:
    height, width = footprint.lr
    references = (
        f"the reference(s) {_references(ref_sizes)} need {format_bytes(footprint.tables())} for their "
        f"texture tables (~{_TABLE_VALUES_PER_LV3 * _ELEMENT_BYTES // 16} bytes per reference pixel), "
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
    return (
        f"memory budget {format_bytes(budget)} too small: the search of the LR {width}x{height} against "
        f"the reference(s) {_references(ref_sizes)} needs {format_bytes(needed)} (the references' lv3 "
        "features, 64 bytes per reference pixel, beside a strip of the LR's and at least one row of "
        "relevance); raise the budget or use a smaller reference"
    )


# --------------------------------------------------------------------------------------- the forward
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
    if not _lean_or_base(generator):
        return generator(lr, lr_up, ref, ref_down_up)._replace(t_lv3=None, t_lv2=None, t_lv1=None)
    attention = global_attention(generator, lr_up, ref, ref_down_up, plan)
    tiles = _tiles((height, width), plan.tile, plan.halo)
    sr = None
    for number, (core, window) in enumerate(tiles):
        tile_sr = window_sr(generator, lr, attention, window, release_tables=number == len(tiles) - 1)
        sr = _place(sr, tile_sr, core, window, (height, width))
    assert sr is not None
    sr = generator.output_image(sr, lr_up)
    if attention is None:
        return GeneratorOutput(sr, None, None, None, None, None)
    return GeneratorOutput(sr, attention.soft_attention, attention.hard_index, None, None, None)


Window = tuple[int, int, int, int]  # top, left, height, width in LR pixels
# Block size of the textures T_lv3, T_lv2, T_lv1 (the order of the tables).
_BLOCKS = (1, 2, 4)


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
    """The LTE (in strips), the search and the value tables, as ``plan`` says; None without texture
    transfer. Needs the lean search-transfer."""
    if generator.lte is None or generator.search_transfer is None:
        return None
    assert isinstance(generator.search_transfer, LeanSearchTransfer)
    batch, _, height, width = lr_up.shape
    height, width = height // 4, width // 4
    refs, refs_down_up = reference_lists(ref, ref_down_up, batch)
    lte = generator.lte
    keys = [_lv3_in_strips(lte, image, plan.strip_rows) for image in refs_down_up]
    chunk_size = generator.search_transfer.chunk_size if plan.search_tile_bytes is None else None
    if plan.strip_rows >= height:
        best_relevance, hard_index = search(lte(lr_up)[2], keys, chunk_size, plan.search_tile_bytes)
    else:
        # LR strip by strip: only a strip's query features exist at a time. A strip's 3x3 patches
        # reach one lv3 row beyond it: searched with those rows, whose own results are dropped.
        best_relevance = lr_up.new_empty(batch, height, width, dtype=torch.float32)
        hard_index = torch.empty(batch, height, width, dtype=torch.int64, device=lr_up.device)
        for first in range(0, height, plan.strip_rows):
            last = min(height, first + plan.strip_rows)
            top, bottom = max(0, first - 1), min(height, last + 1)
            best, index = search(_lv3_rows(lte, lr_up, top, bottom), keys, chunk_size, plan.search_tile_bytes)
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
        return generator.main_net(_crop(lr, window))
    textures = _WindowTextures(attention.tables, attention.chosen, window, release_tables)
    return generator.main_net(
        _crop(lr, window),
        _crop(attention.soft_attention, window) if generator.use_soft_attention else None,
        *(textures.maker(level) for level in range(len(_BLOCKS))),
    )


class _WindowTextures:
    """The textures of one window of the LR grid, each made (from the value tables and the global
    hard attention) when the main network asks for it. With ``release`` the tables are emptied once
    all three are made: the last tile needs them no more."""

    def __init__(
        self, tables: list[torch.Tensor], chosen: ChosenBlocks, window: Window, release: bool
    ) -> None:
        self.tables, self.release, self.pending = tables, release, len(_BLOCKS)
        self.rows = window_rows(chosen, window)
        self.batch, self.size = chosen.rows.size(0), (window[2], window[3])

    def maker(self, level: int) -> Callable[[], torch.Tensor]:
        """The function making texture ``level`` (0: T_lv3, 1: T_lv2, 2: T_lv1)."""
        return functools.partial(self._make, level)

    def _make(self, level: int) -> torch.Tensor:
        texture = transfer_window(self.tables[level], self.rows, self.batch, self.size, _BLOCKS[level])
        self.pending -= 1
        if self.release and not self.pending:
            self.tables.clear()
        return texture


def _tiles(size: tuple[int, int], tile: tuple[int, int], halo: int) -> list[tuple[Window, Window]]:
    """(core, window) of every tile, row-major; one tile (the whole grid) when ``tile`` covers it."""
    height, width = size
    rows = _spans(height, math.ceil(height / tile[0]), halo)
    cols = _spans(width, math.ceil(width / tile[1]), halo)
    return [
        ((top, left, bottom - top, right - left), (w_top, w_left, w_bottom - w_top, w_right - w_left))
        for top, bottom, w_top, w_bottom in rows
        for left, right, w_left, w_right in cols
    ]


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
    LTE_HALO rows of context above and below (none at the image border): the whole image's features."""
    top, bottom = max(0, 4 * first - LTE_HALO), min(image.size(2), 4 * last + LTE_HALO)
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
                    for level, block in zip(lv3_first_levels, _BLOCKS, strict=True)
                ]
            for table, level, block in zip(tables, lv3_first_levels, _BLOCKS, strict=True):
                fill_block_table(table, level, ref_sizes, number, block, first)
    return tables
