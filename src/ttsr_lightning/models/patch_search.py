"""The lean search: the best-matching reference patch of every LR patch, in memory linear in the image.

The relevance (paper Eq. (3): the cosine of two 3x3 lv3 patches) is computed for tiles of LR positions
against all Ref positions, so only a (B, tile, Hr*Wr) block exists at a time. Nothing is unfolded: a
3x3 patch dot product is the sum of nine pixel dot products along a diagonal, so one matmul over the
256 channels (9x fewer FLOPs than over unfolded patches) and nine shifted views of its result give
every patch dot product of the tile; the patch norms come from a 3x3 box sum. Several references are
searched as one, keeping a running max / arg-max per LR position, one reference and one tile at a
time (a strictly larger relevance wins, so a tie goes to the earlier reference, as torch.max over the
concatenated positions would have it). ``hard_index`` counts positions in the concatenation of the
references' row-major lv3 grids (:func:`split_hard_index` maps it back).

After a tile's matmul, the nine shifted sums, the Ref-norm scaling and the max run as torch passes
(:func:`relevance_max`), or, with ``relevance_kernel="triton"`` on CUDA, as one Triton kernel
(:mod:`~ttsr_lightning.models.relevance_triton`). The kernel is opt-in: it has run only in Triton's
CPU interpreter so far, never on a GPU. Where it cannot be imported, compiled or launched, the search
falls back to the torch passes (the same results) with one :class:`RelevanceKernelFallback` warning
per process.

Used by :class:`~ttsr_lightning.models.lean_search_transfer.LeanSearchTransfer` and, for its global
search, by :mod:`ttsr_lightning.budgeted`.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

# F.normalize's default eps: a zero patch stays zero and has relevance 0 with everything.
_NORMALIZE_EPS = 1e-12
# Memory for one tile's dot products when chunk_size is None. On CPU larger tiles are no faster
# (the matmul is compute-bound well below this); on CUDA a quarter of the free memory, at most
# 2 GiB, keeps the kernels large.
_CPU_TILE_BYTES = 256 * 2**20
_CUDA_TILE_BYTES_MAX = 2 * 2**30
# The search computes in float32 (see search()).
_SEARCH_ELEMENT_BYTES = 4
# What computes a tile's patch sums, scaling and max: "torch", the torch passes (relevance_max, the
# default); "triton", one fused Triton kernel (models/relevance_triton.py) for CUDA tensors, opt-in
# until a GPU run has shown it equal to the torch passes.
RELEVANCE_KERNELS = ("torch", "triton")
# Devices whose tensors the Triton kernel takes; elsewhere the torch passes run whatever was asked
# (Triton's CPU interpreter, TRITON_INTERPRET=1, is for the kernel's own tests only).
_TRITON_DEVICE_TYPES = ("cuda",)
# Why the Triton kernel failed in this process (None: it has not), set by the first failure: every
# later search runs the torch passes at once, without retrying a compilation that fails or warning again.
_triton_failure: str | None = None

# A tile's pass after the matmul: (pixel_dots, key_scale, tile_size, ref_size) -> (best, index).
TilePass = Callable[
    [torch.Tensor, torch.Tensor, tuple[int, int], tuple[int, int]], tuple[torch.Tensor, torch.Tensor]
]


class RelevanceKernelFallback(RuntimeWarning):
    """``relevance_kernel="triton"`` was asked for, and the Triton kernel failed: the search ran the
    torch passes instead (the same results). Warned once per process."""


class _TritonFailed(Exception):
    """The Triton kernel failed to import, compile or launch (the cause is ``__cause__``)."""


def check_relevance_kernel(relevance_kernel: str) -> None:
    """Raises ValueError unless ``relevance_kernel`` is one of :data:`RELEVANCE_KERNELS`."""
    if relevance_kernel not in RELEVANCE_KERNELS:
        raise ValueError(
            f"relevance_kernel must be one of {list(RELEVANCE_KERNELS)}, got {relevance_kernel!r}"
        )


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
    return split_unchecked(hard_index, ref_lv3_sizes)


def split_unchecked(
    hard_index: torch.Tensor, ref_sizes: Sequence[tuple[int, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """`split_hard_index` without the range check (for indices this module made)."""
    if len(ref_sizes) == 1:
        return torch.zeros_like(hard_index), hard_index
    counts = device_ints([height * width for height, width in ref_sizes], hard_index.device)
    ends = counts.cumsum(0)
    reference = torch.searchsorted(ends, hard_index, right=True)
    return reference, hard_index - (ends - counts)[reference]


def device_ints(values: Sequence[int], device: torch.device) -> torch.Tensor:
    """A small int64 tensor of ``values`` on ``device``, copied without waiting for the device's queue
    (a plain ``torch.tensor(values, device="cuda")`` is a synchronous copy)."""
    host = torch.tensor(values, dtype=torch.int64)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


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


def chunk_size_for_budget(
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
    relevance_kernel: str = "torch",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best relevance and its position over every reference, in float32, without a graph.

    query_lv3: (B, C, h, w); keys: R tensors (B, C, Hi, Wi). ``chunk_size`` LR positions per
    relevance tile, or None to size the tiles from ``tile_bytes`` (None:
    :func:`default_search_tile_bytes`). ``relevance_kernel``: ``"torch"`` or ``"triton"`` (the fused
    kernel on CUDA; see the module docstring). Returns (B, h*w) S and (B, h*w) int64 ``hard_index``
    (positions in the concatenation of the references' row-major lv3 grids).
    """
    check_relevance_kernel(relevance_kernel)
    chunk_sizes = [chunk_size or chunk_size_for_budget(query_lv3, key, tile_bytes) for key in keys]
    # The search runs in fp32 even under autocast: bf16 relevance (8-bit mantissa) would pick
    # other Ref patches wherever the best two are within ~1e-2, not only at true near-ties.
    with torch.autocast(query_lv3.device.type, enabled=False):
        query_lv3 = query_lv3.float()
        if relevance_kernel == "triton" and _triton_applies(query_lv3.device):
            try:
                return _search(query_lv3, keys, chunk_sizes, _triton_pass)
            except _TritonFailed as failure:
                # Searched again from the start: the result is the torch passes' alone, not a mix of
                # tiles made before the failure by the kernel and after it by torch.
                _fall_back(failure.__cause__)
        return _search(query_lv3, keys, chunk_sizes, relevance_max)


def _triton_applies(device: torch.device) -> bool:
    """Whether the Triton kernel is to be tried on ``device``: it takes its tensors and has not
    failed in this process."""
    return device.type in _TRITON_DEVICE_TYPES and _triton_failure is None


def _triton_pass(
    pixel_dots: torch.Tensor, key_scale: torch.Tensor, tile_size: tuple[int, int], ref_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`relevance_max` by the Triton kernel; whatever fails on the way (importing Triton,
    compiling or launching the kernel) raises :class:`_TritonFailed` from it."""
    try:
        return _triton_kernel()(pixel_dots, key_scale, tile_size, ref_size)
    except Exception as error:  # Triton fails in many ways: ImportError, CompilationError, RuntimeError...
        raise _TritonFailed from error


@functools.cache
def _triton_kernel() -> TilePass:
    """The Triton kernel's entry point (imported on first use: Triton is optional)."""
    from ttsr_lightning.models.relevance_triton import relevance_max as fused

    return fused


def _fall_back(error: BaseException | None) -> None:
    """Records the Triton kernel's failure for this process and warns, once: the torch passes run
    from now on. A Python warning, as for the other settings that cannot take effect here (the
    caller can filter it, or turn it into an error where the kernel must run: the GPU test, the
    benchmark)."""
    global _triton_failure
    # The first line only: a compilation error's message runs to the generated source.
    lines = str(error).strip().splitlines()
    cause = type(error).__name__ + (f": {lines[0][:300]}" if lines else "")
    _triton_failure = cause
    warnings.warn(
        f"relevance_kernel='triton': the Triton relevance kernel failed ({cause}); the search runs the "
        "torch passes instead (the same results), for the rest of this process. relevance_kernel='torch' "
        "asks for them directly.",
        RelevanceKernelFallback,
        stacklevel=2,
    )


@torch.no_grad()
def _search(
    query_lv3: torch.Tensor, keys: Sequence[torch.Tensor], chunk_sizes: Sequence[int], tile_pass: TilePass
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
                best, index = _tile_best(tile, padded_key, key_scale, (ref_height, ref_width), tile_pass)
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
    tile: torch.Tensor,
    padded_key: torch.Tensor,
    key_scale: torch.Tensor,
    ref_size: tuple[int, int],
    tile_pass: TilePass,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best scaled patch relevance of each LR position of a tile over one reference, and where.

    tile: (B, C, rows+2, cols+2) the zero-bordered LR features around the tile; padded_key:
    (B, C, (Hr+2)*(Wr+2)) the zero-bordered Ref features, flattened; key_scale: (B, Hr*Wr) the
    reciprocal Ref patch norms. Returns (B, rows*cols) maxima and their int64 Ref positions (the first
    of equal maxima). One matmul over the C channels gives every pixel pair; ``tile_pass`` makes the
    patch sums, the scaling and the max (:func:`relevance_max` or the Triton kernel).
    """
    batch, channels, bordered_rows, bordered_cols = tile.shape
    tile_size = (bordered_rows - 2, bordered_cols - 2)
    # (B, (rows+2)*(cols+2), (Hr+2)*(Wr+2)): every pixel of the bordered tile against the Ref.
    pixel_dots = torch.bmm(tile.reshape(batch, channels, -1).transpose(1, 2), padded_key)
    return tile_pass(pixel_dots, key_scale, tile_size, ref_size)


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


def relevance_at(
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
