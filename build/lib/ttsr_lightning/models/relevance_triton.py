"""The lean search's inner pass as one Triton kernel: nine shifted sums, the Ref-norm scaling and the
max / arg-max over a relevance tile, read once, never written.

``LeanSearchTransfer`` computes, for a tile of LR positions, the pixel dot products against the whole
(zero-bordered) reference with one matmul, then in torch: nine shifted views added (the 3x3 patch dot
products), a multiplication by the Ref patch norms' reciprocals and a max over the Ref positions. Each
of those passes reads and writes the (B, tile, Hr*Wr) relevance. This kernel does all of it per LR
position in one sweep over the Ref positions, in the same order of floating-point operations, so its
results are bit-identical to the torch path's (its oracle in the tests): the same sums, the same
products, the first of equal maxima.

Imported only where Triton is installed (it ships with CUDA builds of torch); with
``TRITON_INTERPRET=1`` set before the import it runs on CPU tensors (slowly: for tests).
"""

from __future__ import annotations

import torch
import triton  # type: ignore[import-not-found]
import triton.language as tl  # type: ignore[import-not-found]

# Ref positions per loop iteration of a program (one program per LR position and batch item).
BLOCK = 1024


@triton.jit  # type: ignore[untyped-decorator]
def _relevance_max_kernel(  # type: ignore[no-untyped-def]
    dots_ptr,
    scale_ptr,
    best_ptr,
    index_ptr,
    cols,
    ref_width,
    ref_positions,
    lr_positions,
    dots_batch_stride,
    dots_row_stride,
    BLOCK: tl.constexpr,
):
    position = tl.program_id(0)  # LR position in the tile, row-major over rows x cols
    item = tl.program_id(1)
    y = position // cols
    x = position % cols
    dots = dots_ptr + item.to(tl.int64) * dots_batch_stride
    scale = scale_ptr + item.to(tl.int64) * ref_positions
    best = tl.full((), float("-inf"), tl.float32)
    best_index = tl.full((), 0, tl.int64)
    for start in range(0, ref_positions, BLOCK):
        ref = start + tl.arange(0, BLOCK)
        valid = ref < ref_positions
        ref_y = ref // ref_width
        ref_x = ref % ref_width
        # offset d = (dy, dx) in {0, 1, 2}^2 of the bordered grids pairs LR pixel p + d with Ref pixel
        # r + d; summed in the torch path's order: (0, 0) + (0, 1), then + (0, 2), ..., + (2, 2)
        patch = tl.zeros((BLOCK,), tl.float32)
        for d in tl.static_range(9):
            lr_pixel = (y + d // 3) * (cols + 2) + x + d % 3
            ref_pixel = (ref_y + d // 3) * (ref_width + 2) + ref_x + d % 3
            value = tl.load(dots + lr_pixel.to(tl.int64) * dots_row_stride + ref_pixel, mask=valid, other=0.0)
            if d == 0:  # noqa: SIM108 (a constexpr branch: resolved while compiling)
                patch = value
            else:
                patch = patch + value
        relevance = patch * tl.load(scale + ref, mask=valid, other=0.0)
        relevance = tl.where(valid, relevance, float("-inf"))
        block_best, block_index = tl.max(
            relevance, axis=0, return_indices=True, return_indices_tie_break_left=True
        )
        better = block_best > best  # strictly: on a tie the earlier block keeps it, as torch.max
        best = tl.where(better, block_best, best)
        best_index = tl.where(better, start + block_index.to(tl.int64), best_index)
    out = item.to(tl.int64) * lr_positions + position
    tl.store(best_ptr + out, best)
    tl.store(index_ptr + out, best_index)


def relevance_max(
    pixel_dots: torch.Tensor,
    key_scale: torch.Tensor,
    tile_size: tuple[int, int],
    ref_size: tuple[int, int],
    block: int = BLOCK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and first arg-max over the Ref positions of the scaled 3x3 patch relevance of a tile.

    pixel_dots: (B, (rows+2)*(cols+2), (Hr+2)*(Wr+2)) float32, every pixel of the bordered LR tile
    against every pixel of the bordered Ref (last dimension contiguous); key_scale: (B, Hr*Wr) float32;
    returns (B, rows*cols) float32 and int64. ``block``: Ref positions per loop iteration (a power of 2).
    """
    rows, cols = tile_size
    ref_height, ref_width = ref_size
    batch = pixel_dots.size(0)
    if pixel_dots.stride(2) != 1 or not key_scale.is_contiguous():
        raise ValueError(
            "relevance_max needs a contiguous last dimension of pixel_dots and a contiguous key_scale"
        )
    best = torch.empty(batch, rows * cols, dtype=torch.float32, device=pixel_dots.device)
    index = torch.empty(batch, rows * cols, dtype=torch.int64, device=pixel_dots.device)
    _relevance_max_kernel[(rows * cols, batch)](
        pixel_dots,
        key_scale,
        best,
        index,
        cols,
        ref_width,
        ref_height * ref_width,
        rows * cols,
        pixel_dots.stride(0),
        pixel_dots.stride(1),
        BLOCK=block,
    )
    return best, index
