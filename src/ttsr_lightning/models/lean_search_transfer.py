"""Memory-lean search and transfer: the results of :class:`SearchTransfer` without its big tensors.

The straightforward formulation holds the whole relevance matrix (B, Hr*Wr, h*w), the unfolded
3x3 patches (9x256 values per position) and, at every level, the unfolded Ref features (one 64x12x12
column per Ref position at lv1): 13.7 GiB at LR 256x192 with a same-size reference (measured, CPU).
This module computes the same thing in memory linear in the image size, and faster:

- search: the relevance and its max / arg-max are computed for tiles of LR positions against all Ref
  positions, so only a (B, tile, Hr*Wr) block exists at a time. Nothing is unfolded: a 3x3 patch dot
  product is the sum of nine pixel dot products along a diagonal, so one matmul over the 256
  channels (9x fewer FLOPs than over unfolded patches) and nine shifted views of its result give
  every patch dot product of the tile; the patch norms come from a 3x3 box sum;
- transfer: the value patch of a Ref position is a 3x3 grid of s x s blocks (s = 1, 2, 4 at lv3, lv2,
  lv1) centred on that position, and the official fold puts block (dy, dx) of the patch chosen by LR
  position p at block p + (dy, dx) of the output. So each level is a sum of nine gathers of Ref
  blocks (the Ref pixel-unshuffled into rows of s x s blocks), one per offset. A zero border of one
  block plays the unfold's padding and the sum is divided by 9, which reproduces the official fold
  exactly, its dimmed outer ring included.

Several references (keys and values given as sequences, one entry per reference, each its own size)
are searched as one: the result is :class:`SearchTransfer` run over the concatenation of every
reference's patches. The search keeps a running max / arg-max per LR position, one reference and
one tile at a time (a strictly larger relevance wins, so a tie goes to the earlier reference, as
torch.max over the concatenated positions would have it); the transfer gathers from one table of
every reference's blocks, each reference with its own zero border. Memory stays linear in the total
reference area: no canvas, no padding between references. ``hard_index`` then counts positions in
the concatenation (:func:`split_hard_index` maps it back to a reference and a position in it).

The pieces serve :mod:`ttsr_lightning.budgeted` too: :func:`search` (the global search),
:func:`empty_block_table` / :func:`fill_block_table` (value tables filled strip by strip),
:func:`chosen_blocks`, :func:`window_rows` and :func:`transfer_window` (the textures of any window of
the LR grid, read from the whole grid's choices: exactly the whole grid's textures at those positions,
the dimmed ring only at the true LR border).

Results equal the reference's up to float rounding (~1e-6); the arg-max can differ only where two
Ref patches are within rounding of each other (a true near-tie). Autograd works: S is recomputed as
a differentiable cosine at the chosen positions, and the transfer is differentiable in the values.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeAlias

import torch
import torch.nn.functional as F
from torch import nn

from ttsr_lightning.models.search_transfer import SearchTransfer, TransferredTextures

# One reference's features (a tensor) or several references' (a sequence, one tensor each).
ReferenceFeatures: TypeAlias = torch.Tensor | Sequence[torch.Tensor]

# F.normalize's default eps: a zero patch stays zero and has relevance 0 with everything.
_NORMALIZE_EPS = 1e-12
# The official fold divides by a constant 9, not by the true overlap count (see SearchTransfer).
_FOLD_DIVISOR = 9.0
# Memory for one tile's dot products when chunk_size is None. On CPU larger tiles are no faster
# (the matmul is compute-bound well below this); on CUDA a quarter of the free memory, at most
# 2 GiB, keeps the kernels large.
_CPU_TILE_BYTES = 256 * 2**20
_CUDA_TILE_BYTES_MAX = 2 * 2**30
# The search computes in float32 (see LeanSearchTransfer.forward).
_SEARCH_ELEMENT_BYTES = 4
# Largest relevance (B x LR positions x Ref positions, one reference) searched and transferred the
# straightforward way (SearchTransfer: one matmul over unfolded patches, a handful of kernels) instead of
# in tiles: below it the lean path's fixed cost (~60 small kernels) outweighs its 9x fewer FLOPs and
# smaller tensors. Measured by `benchmarks/search_transfer.py --crossover` (benchmarks/RESULTS.md). On
# this project's CPU the tiled path is as fast from LR 3x3 and faster from 6x6 on: never direct. On an
# H200 the straightforward one won at LR 40x40 (1.3 against 3.2 ms; 2.6 M elements) and lost at 125x83
# (13.5 against 8.4 ms; 108 M): the linear interpolation of those two points crosses at ~29 M elements,
# which puts the training size (batch 9 at LR 40x40: 23 M) on the straightforward side; the GPU
# suite's crossover ladder refines it.
DIRECT_SEARCH_MAX_ELEMENTS = {"cpu": 0, "cuda": 29_000_000}
# The fused Triton pass over relevance tiles on CUDA (models/relevance_triton.py) where Triton is
# installed; False keeps the torch passes (its oracle), e.g. to compare the two.
USE_TRITON_RELEVANCE = True


class LeanSearchTransfer(nn.Module):
    """Chunked hard/soft attention with the same results as :class:`SearchTransfer`; no parameters.

    Args:
        chunk_size: LR positions per relevance tile (a near-square block of rows x cols positions;
            its memory is about 2 * B * Hr*Wr * chunk_size floats for a reference of Hr x Wr lv3
            positions). None chooses it, per reference, from a memory budget: 256 MiB on CPU; on
            CUDA a quarter of the free memory, at most 2 GiB.
        direct_max_elements: one reference whose relevance (B x h*w x Hr*Wr elements) is at most this
            is searched and transferred as :class:`SearchTransfer` does (fewer, larger kernels; same
            results); None: :data:`DIRECT_SEARCH_MAX_ELEMENTS` of the device; 0: never. Only when
            ``chunk_size`` is None.

    ``forward(query_lv3, key_lv3, value_lv1, value_lv2, value_lv3)``, as :class:`SearchTransfer`:
        query_lv3: (B, 256, h, w) LTE lv3 of ``lr_up`` (Q);
        key_lv3: (B, 256, Hr, Wr) LTE lv3 of ``ref_down_up`` (K);
        value_lv1 / value_lv2 / value_lv3: LTE lv1/lv2/lv3 of ``ref`` (V),
        (B, 64, 4Hr, 4Wr) / (B, 128, 2Hr, 2Wr) / (B, 256, Hr, Wr), all >= 0.
    Several references: ``key_lv3`` and the three values are sequences of R tensors each, entry i
    of the sizes above for reference i's own (Hi, Wi). Then S is the best relevance over all
    references, the textures come from the reference (and position) that gave it, and
    ``hard_index`` is a position in the concatenation of the references' row-major lv3 grids, in
    list order: reference i's position j is ``H0*W0 + ... + H(i-1)*W(i-1) + j``
    (:func:`split_hard_index` inverts this). One reference, as a tensor or a sequence of one, gives
    exactly the one-reference result. Returns :class:`TransferredTextures`.
    """

    def __init__(self, chunk_size: int | None = None, direct_max_elements: int | None = None) -> None:
        super().__init__()
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(
                f"chunk_size must be a positive number of LR positions or None, got {chunk_size}"
            )
        if direct_max_elements is not None and direct_max_elements < 0:
            raise ValueError(f"direct_max_elements must be >= 0 or None, got {direct_max_elements}")
        self.chunk_size = chunk_size
        self.direct_max_elements = direct_max_elements
        self.straightforward = SearchTransfer()  # no parameters: nothing in the state dict

    def forward(
        self,
        query_lv3: torch.Tensor,
        key_lv3: ReferenceFeatures,
        value_lv1: ReferenceFeatures,
        value_lv2: ReferenceFeatures,
        value_lv3: ReferenceFeatures,
    ) -> TransferredTextures:
        keys, values_lv1, values_lv2, values_lv3 = _reference_lists(key_lv3, value_lv1, value_lv2, value_lv3)
        _check_shapes(
            query_lv3,
            keys,
            values_lv1,
            values_lv2,
            values_lv3,
            numbered=not isinstance(key_lv3, torch.Tensor),
        )
        batch, _, height, width = query_lv3.shape
        if self._direct(query_lv3, keys):
            # the search in fp32 even under autocast, as the lean one (see search())
            with torch.autocast(query_lv3.device.type, enabled=False):
                return self.straightforward(
                    query_lv3.float(), keys[0].float(), values_lv1[0], values_lv2[0], values_lv3[0]
                )
        ref_sizes = [(key.size(2), key.size(3)) for key in keys]
        best_relevance, hard_index = search(query_lv3, keys, chunk_size=self.chunk_size)
        if torch.is_grad_enabled() and (query_lv3.requires_grad or any(key.requires_grad for key in keys)):
            # The search ran without a graph (keeping one would keep every relevance block for the
            # backward). The max of the relevance has the same gradient as the relevance at the
            # arg-max, so S is recomputed there, differentiably and in memory linear in h*w.
            reference, position = _split(hard_index, ref_sizes)
            soft_attention = _relevance_at(query_lv3, keys, reference, position)
        else:
            soft_attention = best_relevance

        chosen = chosen_blocks(hard_index, ref_sizes, (height, width))
        rows = window_rows(chosen, (0, 0, height, width))
        return TransferredTextures(
            soft_attention=soft_attention.view(batch, 1, height, width),
            hard_index=hard_index,
            t_lv3=_transfer(values_lv3, rows, ref_sizes, (height, width), block=1),
            t_lv2=_transfer(values_lv2, rows, ref_sizes, (height, width), block=2),
            t_lv1=_transfer(values_lv1, rows, ref_sizes, (height, width), block=4),
        )

    def _direct(self, query_lv3: torch.Tensor, keys: Sequence[torch.Tensor]) -> bool:
        """Whether this search is small enough for the straightforward formulation."""
        if self.chunk_size is not None or len(keys) != 1:
            return False
        limit = self.direct_max_elements
        if limit is None:
            limit = DIRECT_SEARCH_MAX_ELEMENTS.get(query_lv3.device.type, 0)
        batch, _, height, width = query_lv3.shape
        return batch * height * width * keys[0].size(2) * keys[0].size(3) <= limit


def split_hard_index(
    hard_index: torch.Tensor, ref_lv3_sizes: Sequence[tuple[int, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which reference, and which position in it, a ``hard_index`` over several references means.

    hard_index: int64, any shape (e.g. (B, h*w)), positions in the concatenation of the references'
    row-major lv3 grids in list order; ref_lv3_sizes: (Hi, Wi) lv3 positions of each reference,
    i.e. (H // 4, W // 4) of reference image i. Returns ``(reference, position)``, both int64 of
    ``hard_index``'s shape: reference in [0, R), position in [0, Hi*Wi) row-major in that
    reference's lv3 grid (row ``position // Wi``, column ``position % Wi``). With one reference,
    reference is all zeros and position is ``hard_index``.
    """
    if not ref_lv3_sizes:
        raise ValueError("ref_lv3_sizes must list at least one (height, width) lv3 size")
    total = sum(ref_height * ref_width for ref_height, ref_width in ref_lv3_sizes)
    if hard_index.numel() and (hard_index.min() < 0 or hard_index.max() >= total):
        raise ValueError(
            f"hard_index must lie in [0, {total}) for references of lv3 sizes {list(ref_lv3_sizes)}; "
            f"got values in [{hard_index.min().item()}, {hard_index.max().item()}]"
        )
    return _split(hard_index, ref_lv3_sizes)


def _split(
    hard_index: torch.Tensor, ref_sizes: Sequence[tuple[int, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`split_hard_index` without the range check (for indices this module made)."""
    if len(ref_sizes) == 1:
        return torch.zeros_like(hard_index), hard_index
    counts = _device_ints([height * width for height, width in ref_sizes], hard_index.device)
    ends = counts.cumsum(0)
    reference = torch.searchsorted(ends, hard_index, right=True)
    return reference, hard_index - (ends - counts)[reference]


def _device_ints(values: Sequence[int], device: torch.device) -> torch.Tensor:
    """A small int64 tensor of ``values`` on ``device``, copied without waiting for the device's queue
    (a plain ``torch.tensor(values, device="cuda")`` is a synchronous copy)."""
    host = torch.tensor(values, dtype=torch.int64)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def _reference_lists(
    key_lv3: ReferenceFeatures,
    value_lv1: ReferenceFeatures,
    value_lv2: ReferenceFeatures,
    value_lv3: ReferenceFeatures,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """The references' features as four lists of equal length; ValueError naming what does not fit."""
    if (
        isinstance(key_lv3, torch.Tensor)
        and isinstance(value_lv1, torch.Tensor)
        and isinstance(value_lv2, torch.Tensor)
        and isinstance(value_lv3, torch.Tensor)
    ):
        return [key_lv3], [value_lv1], [value_lv2], [value_lv3]
    arguments = {"key_lv3": key_lv3, "value_lv1": value_lv1, "value_lv2": value_lv2, "value_lv3": value_lv3}
    kinds = {name: type(argument).__name__ for name, argument in arguments.items()}
    if any(isinstance(argument, torch.Tensor) for argument in arguments.values()):
        raise ValueError(
            "key_lv3, value_lv1, value_lv2 and value_lv3 must all be tensors (one reference) or all "
            f"sequences of tensors (one per reference); got {kinds}"
        )
    lists = {name: list(argument) for name, argument in arguments.items()}
    lengths = {name: len(features) for name, features in lists.items()}
    if len(set(lengths.values())) != 1 or not lengths["key_lv3"]:
        raise ValueError(
            "key_lv3, value_lv1, value_lv2 and value_lv3 must list the same number of references "
            f"(at least one); got lengths {lengths}"
        )
    for name, features in lists.items():
        for number, feature in enumerate(features):
            if not isinstance(feature, torch.Tensor):
                raise ValueError(f"{name}[{number}] must be a tensor, got {type(feature).__name__}")
    return lists["key_lv3"], lists["value_lv1"], lists["value_lv2"], lists["value_lv3"]


def _check_shapes(
    query_lv3: torch.Tensor,
    keys: Sequence[torch.Tensor],
    values_lv1: Sequence[torch.Tensor],
    values_lv2: Sequence[torch.Tensor],
    values_lv3: Sequence[torch.Tensor],
    numbered: bool,
) -> None:
    """Raises ValueError naming the argument whose shape does not fit the others.

    ``numbered``: the references came as sequences, so names carry the index (``value_lv1[2]``).
    """
    for number, (key_lv3, value_lv1, value_lv2, value_lv3) in enumerate(
        zip(keys, values_lv1, values_lv2, values_lv3, strict=True)
    ):
        index = f"[{number}]" if numbered else ""
        if query_lv3.ndim != 4 or key_lv3.ndim != 4:
            raise ValueError(
                f"query_lv3 and key_lv3{index} must be (B, C, H, W), "
                f"got {tuple(query_lv3.shape)} and {tuple(key_lv3.shape)}"
            )
        batch, channels = query_lv3.shape[:2]
        ref_height, ref_width = key_lv3.shape[-2:]
        if key_lv3.shape[:2] != (batch, channels):
            raise ValueError(
                f"key_lv3{index} must be ({batch}, {channels}, Hr, Wr) like query_lv3, "
                f"got {tuple(key_lv3.shape)}"
            )
        for name, value, first, block in (
            ("value_lv3", value_lv3, values_lv3[0], 1),
            ("value_lv2", value_lv2, values_lv2[0], 2),
            ("value_lv1", value_lv1, values_lv1[0], 4),
        ):
            expected = (block * ref_height, block * ref_width)
            if value.ndim != 4 or value.size(0) != batch or tuple(value.shape[-2:]) != expected:
                raise ValueError(
                    f"{name}{index} must be ({batch}, C, {expected[0]}, {expected[1]}) for a key_lv3{index} "
                    f"of {ref_height}x{ref_width} (Ref sides multiples of 4), got {tuple(value.shape)}"
                )
            if value.size(1) != first.size(1):
                # The transfer reads every reference's blocks from one table of C * s * s columns.
                raise ValueError(
                    f"{name}{index} must have {first.size(1)} channels like {name}[0], got {value.size(1)}"
                )


def default_search_tile_bytes(device: torch.device) -> int:
    """Memory for one relevance tile when nothing else decides: 256 MiB on CPU; on CUDA a quarter of
    the free memory, at most 2 GiB."""
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        return min(free_bytes // 4, _CUDA_TILE_BYTES_MAX)
    return _CPU_TILE_BYTES


def search_tile_bytes_per_position(batch: int, ref_lv3_size: tuple[int, int]) -> int:
    """Bytes one LR position adds to a relevance tile against a reference of (Hr, Wr) lv3 positions.

    Per LR position: one row of patch relevance (Hr*Wr) and, about, one of pixel dot products against
    the zero-bordered Ref ((Hr+2)*(Wr+2)); the tile's halo adds a little to the latter. Counted in
    float32, the search's precision whatever the features' dtype (bf16 under autocast).
    """
    ref_height, ref_width = ref_lv3_size
    positions = ref_height * ref_width + (ref_height + 2) * (ref_width + 2)
    return batch * positions * _SEARCH_ELEMENT_BYTES


def _chunk_size_for_budget(
    query_lv3: torch.Tensor, key_lv3: torch.Tensor, tile_bytes: int | None = None
) -> int:
    """LR positions per tile such that one tile's dot products (pixel and patch) fit ``tile_bytes``
    (None: :func:`default_search_tile_bytes`)."""
    budget = default_search_tile_bytes(query_lv3.device) if tile_bytes is None else tile_bytes
    per_position = search_tile_bytes_per_position(query_lv3.size(0), (key_lv3.size(2), key_lv3.size(3)))
    return max(1, budget // per_position)


def _tile_shape(chunk_size: int, height: int, width: int) -> tuple[int, int]:
    """A near-square tile of about ``chunk_size`` LR positions (rows, cols) inside an h x w grid."""
    cols = min(width, max(1, math.isqrt(chunk_size)))
    rows = min(height, max(1, chunk_size // cols))
    return rows, cols


def _patch_norms(features: torch.Tensor) -> torch.Tensor:
    """L2 norm of every zero-padded 3x3 patch: (B, C, H, W) -> (B, H*W), the norm F.unfold would give."""
    squared = features.pow(2).sum(dim=1, keepdim=True)
    return F.conv2d(squared, squared.new_ones(1, 1, 3, 3), padding=1).sqrt().flatten(1)


@torch.compiler.disable  # tile loops sized from free memory: nothing for a static graph
def search(
    query_lv3: torch.Tensor,
    keys: Sequence[torch.Tensor],
    chunk_size: int | None = None,
    tile_bytes: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best relevance and its position over every reference, in float32, without a graph.

    query_lv3: (B, C, h, w); keys: R tensors (B, C, Hi, Wi). ``chunk_size`` LR positions per
    relevance tile, or None to size the tiles from ``tile_bytes`` (None:
    :func:`default_search_tile_bytes`). Returns (B, h*w) S and (B, h*w) int64 ``hard_index`` (positions
    in the concatenation of the references' row-major lv3 grids).
    """
    chunk_sizes = [chunk_size or _chunk_size_for_budget(query_lv3, key, tile_bytes) for key in keys]
    # The search runs in fp32 even under autocast: bf16 relevance (8-bit mantissa) would pick
    # other Ref patches wherever the best two are within ~1e-2, not only at true near-ties.
    with torch.autocast(query_lv3.device.type, enabled=False):
        return _search(query_lv3.float(), keys, chunk_sizes)


@torch.no_grad()
def _search(
    query_lv3: torch.Tensor, keys: Sequence[torch.Tensor], chunk_sizes: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and arg-max over all references' positions of the cosine relevance between 3x3 lv3 patches.

    query_lv3 (B, C, h, w) fp32; keys: R tensors (B, C, Hi, Wi); chunk_sizes: LR positions per tile
    for each reference -> (B, h*w) best relevance, (B, h*w) int64 index into the concatenation of
    the references' row-major lv3 positions.

    With both maps zero-bordered, the dot product of the 3x3 patches at LR position p and Ref
    position r is <Q(p), K(r)> = sum over offsets d in {-1, 0, 1}^2 of <q(p + d), k(r + d)>. For a
    tile of LR positions one matmul over C channels gives every pixel pair (9x fewer FLOPs than
    matching unfolded 9C-long patches); nine shifted views of it, added, give the patch dots.
    Dividing by the Ref patch norm before the max and by the LR patch norm after it gives the cosine
    (the LR norm is the same for every reference, so the running max across references may skip it).
    """
    batch, _, height, width = query_lv3.shape
    query_scale = 1.0 / _patch_norms(query_lv3).clamp_min(_NORMALIZE_EPS)  # (B, h*w)
    padded_query = F.pad(query_lv3, (1, 1, 1, 1))

    best_relevance = query_lv3.new_empty(batch, height, width)
    hard_index = torch.empty(batch, height, width, dtype=torch.int64, device=query_lv3.device)
    first_position = 0  # of the current reference in the concatenated index
    for number, (key_lv3, chunk_size) in enumerate(zip(keys, chunk_sizes, strict=True)):
        key_lv3 = key_lv3.float()  # one reference at a time in fp32 (the search's precision)
        key_scale = 1.0 / _patch_norms(key_lv3).clamp_min(_NORMALIZE_EPS)  # (B, Hi*Wi)
        padded_key = F.pad(key_lv3, (1, 1, 1, 1)).flatten(2)  # (B, C, (Hi+2)*(Wi+2))
        ref_height, ref_width = key_lv3.shape[-2:]
        tile_rows, tile_cols = _tile_shape(chunk_size, height, width)
        for top in range(0, height, tile_rows):
            rows = min(tile_rows, height - top)
            for left in range(0, width, tile_cols):
                cols = min(tile_cols, width - left)
                tile = padded_query[:, :, top : top + rows + 2, left : left + cols + 2]
                best, index = _tile_best(tile, padded_key, key_scale, (ref_height, ref_width))
                best, index = best.view(batch, rows, cols), index.view(batch, rows, cols) + first_position
                region = (slice(None), slice(top, top + rows), slice(left, left + cols))
                if number == 0:
                    best_relevance[region], hard_index[region] = best, index
                else:
                    # Strictly larger only: on a tie the earlier reference keeps the position, as
                    # torch.max over the concatenated positions would (it returns the first maximum).
                    better = best > best_relevance[region]
                    best_relevance[region] = torch.where(better, best, best_relevance[region])
                    hard_index[region] = torch.where(better, index, hard_index[region])
        first_position += ref_height * ref_width
    return best_relevance.flatten(1) * query_scale, hard_index.flatten(1)


def _tile_best(
    tile: torch.Tensor, padded_key: torch.Tensor, key_scale: torch.Tensor, ref_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best scaled patch relevance of each LR position of a tile over one reference, and where.

    tile: (B, C, rows+2, cols+2) the zero-bordered LR features around the tile; padded_key:
    (B, C, (Hr+2)*(Wr+2)) the zero-bordered Ref features, flattened; key_scale: (B, Hr*Wr) the
    reciprocal Ref patch norms. Returns (B, rows*cols) maxima and their int64 Ref positions (the first
    of equal maxima). One matmul over the C channels gives every pixel pair; on CUDA one Triton pass
    makes the patch sums, the scaling and the max (:mod:`relevance_triton`), else :func:`relevance_max`.
    """
    batch, channels, bordered_rows, bordered_cols = tile.shape
    tile_size = (bordered_rows - 2, bordered_cols - 2)
    # (B, (rows+2)*(cols+2), (Hr+2)*(Wr+2)): every pixel of the bordered tile against the Ref.
    pixel_dots = torch.bmm(tile.reshape(batch, channels, -1).transpose(1, 2), padded_key)
    fused = _triton_relevance_max() if pixel_dots.is_cuda else None
    if fused is not None:
        return fused(pixel_dots, key_scale, tile_size, ref_size)
    return relevance_max(pixel_dots, key_scale, tile_size, ref_size)


def relevance_max(
    pixel_dots: torch.Tensor, key_scale: torch.Tensor, tile_size: tuple[int, int], ref_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The patch sums, scaling and max of :func:`_tile_best` in torch (the Triton kernel's oracle).

    pixel_dots: (B, (rows+2)*(cols+2), (Hr+2)*(Wr+2)) dot products of every pixel of the bordered
    tile with every pixel of the bordered Ref; key_scale (B, Hr*Wr); returns (B, rows*cols) float and
    int64.
    """
    batch = pixel_dots.size(0)
    rows, cols = tile_size
    ref_height, ref_width = ref_size
    # pixel_dots seen as (B, rows+2, cols+2, Hr+2, Wr+2); shifted[dy + 1, dx + 1] is the view
    # pairing LR pixel p + d with Ref pixel r + d, for p, r over the tile and the Ref.
    stride_b, stride_qx = pixel_dots.stride(0), pixel_dots.stride(1)
    stride_qy, stride_ky = (cols + 2) * stride_qx, ref_width + 2
    shifted = pixel_dots.as_strided(
        (3, 3, batch, rows, cols, ref_height, ref_width),
        (stride_qy + stride_ky, stride_qx + 1, stride_b, stride_qy, stride_qx, stride_ky, 1),
    )
    patch_dots = shifted[0, 0] + shifted[0, 1]
    for neighbour in range(2, 9):
        patch_dots += shifted[neighbour // 3, neighbour % 3]
    relevance = patch_dots.view(batch, rows * cols, ref_height * ref_width)
    relevance *= key_scale.unsqueeze(1)
    best, index = relevance.max(dim=2)
    return best, index


def _triton_relevance_max() -> Callable[..., tuple[torch.Tensor, torch.Tensor]] | None:
    """The Triton kernel's entry point where Triton is installed and not turned off, else None."""
    return _triton_kernel() if USE_TRITON_RELEVANCE else None


@functools.cache
def _triton_kernel() -> Callable[..., tuple[torch.Tensor, torch.Tensor]] | None:
    if importlib.util.find_spec("triton") is None:
        return None
    from ttsr_lightning.models.relevance_triton import relevance_max as fused

    return fused


def _relevance_at(
    query_lv3: torch.Tensor, keys: Sequence[torch.Tensor], reference: torch.Tensor, position: torch.Tensor
) -> torch.Tensor:
    """Differentiable cosine between each LR patch and the patch it chose: (B, h*w).

    reference, position: (B, h*w) int64, the chosen reference and its lv3 position (row-major).
    """
    query_patches = F.normalize(F.unfold(query_lv3, kernel_size=3, padding=1), dim=1)  # (B, 9C, h*w)
    relevances = []
    for number, key_lv3 in enumerate(keys):
        key_patches = F.normalize(F.unfold(key_lv3, kernel_size=3, padding=1), dim=1)  # (B, 9C, Hi*Wi)
        # Positions that chose another reference read this one's first patch; the gather below
        # keeps, per position, only the relevance to the reference it chose.
        index = torch.where(reference == number, position, 0)
        chosen = key_patches.gather(2, index.unsqueeze(1).expand(-1, key_patches.size(1), -1))
        relevances.append((chosen * query_patches).sum(dim=1))
    return torch.stack(relevances).gather(0, reference.unsqueeze(0)).squeeze(0)


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
    reference, position = _split(hard_index, ref_sizes)
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
        widths = _device_ints([ref_width for _, ref_width in ref_sizes], device)
        chosen_width = widths[reference].view(batch, height, width)
        grid_start = _device_ints(grid_starts, device)[reference].view(batch, height, width)
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


def _transfer(
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
