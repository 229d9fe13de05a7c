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

Results equal the reference's up to float rounding (~1e-6); the arg-max can differ only where two
Ref patches are within rounding of each other (a true near-tie). Autograd works: S is recomputed as
a differentiable cosine at the chosen positions, and the transfer is differentiable in the values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ttsr_lightning.models.search_transfer import TransferredTextures

# F.normalize's default eps: a zero patch stays zero and has relevance 0 with everything.
_NORMALIZE_EPS = 1e-12
# The official fold divides by a constant 9, not by the true overlap count (see SearchTransfer).
_FOLD_DIVISOR = 9.0
# Memory for one tile's dot products when chunk_size is None. On CPU larger tiles are no faster
# (the matmul is compute-bound well below this); on CUDA a quarter of the free memory, at most
# 2 GiB, keeps the kernels large.
_CPU_TILE_BYTES = 256 * 2**20
_CUDA_TILE_BYTES_MAX = 2 * 2**30


class LeanSearchTransfer(nn.Module):
    """Chunked hard/soft attention with the same results as :class:`SearchTransfer`; no parameters.

    Args:
        chunk_size: LR positions per relevance tile (a near-square block of rows x cols positions;
            its memory is about 2 * B * Hr*Wr * chunk_size floats). None chooses it from a memory
            budget: 256 MiB on CPU; on CUDA a quarter of the free memory, at most 2 GiB.

    ``forward(query_lv3, key_lv3, value_lv1, value_lv2, value_lv3)``, as :class:`SearchTransfer`:
        query_lv3: (B, 256, h, w) LTE lv3 of ``lr_up`` (Q);
        key_lv3: (B, 256, Hr, Wr) LTE lv3 of ``ref_down_up`` (K);
        value_lv1 / value_lv2 / value_lv3: LTE lv1/lv2/lv3 of ``ref`` (V),
        (B, 64, 4Hr, 4Wr) / (B, 128, 2Hr, 2Wr) / (B, 256, Hr, Wr), all >= 0.
    Returns :class:`TransferredTextures`.
    """

    def __init__(self, chunk_size: int | None = None) -> None:
        super().__init__()
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(
                f"chunk_size must be a positive number of LR positions or None, got {chunk_size}"
            )
        self.chunk_size = chunk_size

    def forward(
        self,
        query_lv3: torch.Tensor,
        key_lv3: torch.Tensor,
        value_lv1: torch.Tensor,
        value_lv2: torch.Tensor,
        value_lv3: torch.Tensor,
    ) -> TransferredTextures:
        _check_shapes(query_lv3, key_lv3, value_lv1, value_lv2, value_lv3)
        batch, _, height, width = query_lv3.shape
        chunk_size = self.chunk_size or _chunk_size_for_budget(query_lv3, key_lv3)

        # The search runs in fp32 even under autocast: bf16 relevance (8-bit mantissa) would pick
        # other Ref patches wherever the best two are within ~1e-2, not only at true near-ties.
        with torch.autocast(query_lv3.device.type, enabled=False):
            best_relevance, hard_index = _search(query_lv3.float(), key_lv3.float(), chunk_size)
        if torch.is_grad_enabled() and (query_lv3.requires_grad or key_lv3.requires_grad):
            # The search ran without a graph (keeping one would keep every relevance block for the
            # backward). The max of the relevance has the same gradient as the relevance at the
            # arg-max, so S is recomputed there, differentiably and in memory linear in h*w.
            soft_attention = _relevance_at(query_lv3, key_lv3, hard_index)
        else:
            soft_attention = best_relevance

        return TransferredTextures(
            soft_attention=soft_attention.view(batch, 1, height, width),
            hard_index=hard_index,
            t_lv3=_transfer(value_lv3, hard_index, (height, width), block=1),
            t_lv2=_transfer(value_lv2, hard_index, (height, width), block=2),
            t_lv1=_transfer(value_lv1, hard_index, (height, width), block=4),
        )


def _check_shapes(
    query_lv3: torch.Tensor,
    key_lv3: torch.Tensor,
    value_lv1: torch.Tensor,
    value_lv2: torch.Tensor,
    value_lv3: torch.Tensor,
) -> None:
    """Raises ValueError naming the argument whose shape does not fit the others."""
    if query_lv3.ndim != 4 or key_lv3.ndim != 4:
        raise ValueError(
            "query_lv3 and key_lv3 must be (B, C, H, W), "
            f"got {tuple(query_lv3.shape)} and {tuple(key_lv3.shape)}"
        )
    batch, channels = query_lv3.shape[:2]
    ref_height, ref_width = key_lv3.shape[-2:]
    if key_lv3.shape[:2] != (batch, channels):
        raise ValueError(
            f"key_lv3 must be ({batch}, {channels}, Hr, Wr) like query_lv3, got {tuple(key_lv3.shape)}"
        )
    for name, value, block in (
        ("value_lv3", value_lv3, 1),
        ("value_lv2", value_lv2, 2),
        ("value_lv1", value_lv1, 4),
    ):
        expected = (block * ref_height, block * ref_width)
        if value.ndim != 4 or value.size(0) != batch or tuple(value.shape[-2:]) != expected:
            raise ValueError(
                f"{name} must be ({batch}, C, {expected[0]}, {expected[1]}) for a key_lv3 of "
                f"{ref_height}x{ref_width} (Ref sides multiples of 4), got {tuple(value.shape)}"
            )


def _chunk_size_for_budget(query_lv3: torch.Tensor, key_lv3: torch.Tensor) -> int:
    """LR positions per tile such that one tile's dot products (pixel and patch) fit the budget."""
    if query_lv3.device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(query_lv3.device)
        budget = min(free_bytes // 4, _CUDA_TILE_BYTES_MAX)
    else:
        budget = _CPU_TILE_BYTES
    ref_height, ref_width = key_lv3.shape[-2:]
    # Per LR position: one row of patch relevance (Hr*Wr) and, about, one of pixel dot products
    # against the zero-bordered Ref ((Hr+2)*(Wr+2)); the tile's halo adds a little to the latter.
    positions_bytes = ref_height * ref_width + (ref_height + 2) * (ref_width + 2)
    return max(1, budget // (query_lv3.size(0) * positions_bytes * query_lv3.element_size()))


def _tile_shape(chunk_size: int, height: int, width: int) -> tuple[int, int]:
    """A near-square tile of about ``chunk_size`` LR positions (rows, cols) inside an h x w grid."""
    cols = min(width, max(1, math.isqrt(chunk_size)))
    rows = min(height, max(1, chunk_size // cols))
    return rows, cols


def _patch_norms(features: torch.Tensor) -> torch.Tensor:
    """L2 norm of every zero-padded 3x3 patch: (B, C, H, W) -> (B, H*W), the norm F.unfold would give."""
    squared = features.pow(2).sum(dim=1, keepdim=True)
    return F.conv2d(squared, squared.new_ones(1, 1, 3, 3), padding=1).sqrt().flatten(1)


@torch.no_grad()
def _search(
    query_lv3: torch.Tensor, key_lv3: torch.Tensor, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and arg-max over Ref positions of the cosine relevance between 3x3 lv3 patches.

    query_lv3 (B, C, h, w), key_lv3 (B, C, Hr, Wr) -> (B, h*w) best relevance, (B, h*w) int64 index
    into the row-major Hr*Wr Ref positions.

    With both maps zero-bordered, the dot product of the 3x3 patches at LR position p and Ref
    position r is <Q(p), K(r)> = sum over offsets d in {-1, 0, 1}^2 of <q(p + d), k(r + d)>. For a
    tile of LR positions one matmul over C channels gives every pixel pair (9x fewer FLOPs than
    matching unfolded 9C-long patches); nine shifted views of it, added, give the patch dots.
    Dividing by the Ref patch norm before the max and by the LR patch norm after it gives the cosine.
    """
    batch, channels, height, width = query_lv3.shape
    ref_height, ref_width = key_lv3.shape[-2:]
    key_scale = 1.0 / _patch_norms(key_lv3).clamp_min(_NORMALIZE_EPS)  # (B, Hr*Wr)
    query_scale = 1.0 / _patch_norms(query_lv3).clamp_min(_NORMALIZE_EPS)  # (B, h*w)
    padded_key = F.pad(key_lv3, (1, 1, 1, 1)).flatten(2)  # (B, C, (Hr+2)*(Wr+2))
    padded_query = F.pad(query_lv3, (1, 1, 1, 1))

    best_relevance = query_lv3.new_empty(batch, height, width)
    hard_index = torch.empty(batch, height, width, dtype=torch.int64, device=query_lv3.device)
    tile_rows, tile_cols = _tile_shape(chunk_size, height, width)
    for top in range(0, height, tile_rows):
        rows = min(tile_rows, height - top)
        for left in range(0, width, tile_cols):
            cols = min(tile_cols, width - left)
            tile = padded_query[:, :, top : top + rows + 2, left : left + cols + 2].reshape(
                batch, channels, -1
            )
            # (B, (rows+2)*(cols+2), (Hr+2)*(Wr+2)): every pixel of the bordered tile against the Ref.
            pixel_dots = torch.bmm(tile.transpose(1, 2), padded_key)

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
            best_relevance[:, top : top + rows, left : left + cols] = best.view(batch, rows, cols)
            hard_index[:, top : top + rows, left : left + cols] = index.view(batch, rows, cols)
    return best_relevance.flatten(1) * query_scale, hard_index.flatten(1)


def _relevance_at(query_lv3: torch.Tensor, key_lv3: torch.Tensor, hard_index: torch.Tensor) -> torch.Tensor:
    """Differentiable cosine between each LR patch and the Ref patch at ``hard_index``: (B, h*w)."""
    query_patches = F.normalize(F.unfold(query_lv3, kernel_size=3, padding=1), dim=1)  # (B, 9C, h*w)
    key_patches = F.normalize(F.unfold(key_lv3, kernel_size=3, padding=1), dim=1)  # (B, 9C, Hr*Wr)
    chosen = key_patches.gather(2, hard_index.unsqueeze(1).expand(-1, key_patches.size(1), -1))
    return (chosen * query_patches).sum(dim=1)


def _transfer(
    value: torch.Tensor, hard_index: torch.Tensor, lr_size: tuple[int, int], block: int
) -> torch.Tensor:
    """The official unfold-gather-fold of one level, as nine gathers of s x s Ref blocks, summed.

    value: (B, C, s*Hr, s*Wr) Ref features (s = ``block``); hard_index: (B, h*w) into Hr*Wr;
    returns (B, C, s*h, s*w). Output block q is the sum over the offsets d in {-1, 0, 1}^2 of Ref
    block hard_index(q - d) + d (block d of the patch chosen at q - d), divided by 9.
    """
    batch, channels = value.shape[:2]
    ref_height, ref_width = value.size(2) // block, value.size(3) // block
    height, width = lr_size

    # Ref as a zero-bordered grid of blocks, one row of C*s*s values per block: the border is the
    # unfold's padding. Filled through views, so no full-size temporary is made.
    blocks = value.new_zeros(batch, ref_height + 2, ref_width + 2, channels * block * block)
    ref_blocks = value.unflatten(3, (ref_width, block)).unflatten(2, (ref_height, block))  # B,C,Hr,s,Wr,s
    blocks[:, 1:-1, 1:-1].unflatten(-1, (channels, block, block)).copy_(ref_blocks.permute(0, 2, 4, 1, 3, 5))
    block_rows = blocks.view(-1, blocks.size(-1))

    # Row in block_rows of the Ref block each LR position chose, on the LR grid bordered by -1.
    padded_width = ref_width + 2
    zero_row = torch.arange(batch, device=value.device).view(batch, 1, 1) * (ref_height + 2) * padded_width
    chosen = hard_index.view(batch, height, width)
    chosen_rows = F.pad(
        zero_row + (chosen // ref_width + 1) * padded_width + chosen % ref_width + 1, (1,) * 4, value=-1
    )
    gathered_rows = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            source = chosen_rows[:, 1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width]  # chosen at q - d
            # Outside the LR grid nothing lands: read the Ref's zero corner block instead.
            gathered_rows.append(
                torch.where(source >= 0, source + dy * padded_width + dx, zero_row).flatten()
            )

    # Out-of-place gathers summed into a plain tensor: cheap to differentiate (no in-place view writes).
    transferred_rows = block_rows.index_select(0, gathered_rows[0])  # (B*h*w, C*s*s)
    for rows in gathered_rows[1:]:
        transferred_rows += block_rows.index_select(0, rows)
    del blocks, block_rows  # the Ref copy is no longer needed: free it before the output copy below
    transferred = transferred_rows.view(batch, height, width, channels, block, block).permute(
        0, 3, 1, 4, 2, 5
    )
    return transferred.reshape(batch, channels, block * height, block * width).div_(_FOLD_DIVISOR)
