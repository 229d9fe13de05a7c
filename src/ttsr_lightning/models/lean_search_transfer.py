"""Memory-lean search and transfer: the results of :class:`SearchTransfer` without its big tensors.

The straightforward formulation holds the whole relevance matrix (B, Hr*Wr, h*w) and, at every level,
the unfolded Ref features (one 64x12x12 column per Ref position at lv1): about 17 GB at LR 256x192
with a same-size reference. This module computes the same thing in memory linear in the image size:

- search: the relevance and its max / arg-max are computed for chunks of LR positions against all
  Ref positions (Ref patches unfolded and normalised once), so only a (B, Hr*Wr, chunk) block of the
  relevance exists at a time;
- transfer: the value patch of a Ref position is a 3x3 grid of s x s blocks (s = 1, 2, 4 at lv3, lv2,
  lv1) centred on that position, and the official fold puts block (dy, dx) of the patch chosen by
  LR position p at block p + (dy, dx) of the output. So each level is a sum of nine shifted gathers
  of Ref blocks (the Ref, pixel-unshuffled into rows of s x s blocks); nothing is unfolded. A zero
  border of one block plays the unfold's padding and the sum is divided by 9, which reproduces the
  official fold exactly, its dimmed outer ring included.

Results equal the reference up to float summation order (< 1e-5); the arg-max can differ only where
two Ref patches are within rounding of each other (a true near-tie). Autograd works: S is recomputed
as a differentiable cosine at the chosen positions, and the transfer is differentiable in the values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ttsr_lightning.models.search_transfer import TransferredTextures

# F.normalize's default eps: a zero patch stays zero and has relevance 0 with everything.
_NORMALIZE_EPS = 1e-12
# The official fold divides by a constant 9, not by the true overlap count (see SearchTransfer).
_FOLD_DIVISOR = 9.0
# Budget for one chunk's relevance block and query patches when chunk_size is None. On CPU a larger
# block is no faster (the matmul is compute-bound from a few hundred columns on); on CUDA a quarter of
# the free memory, up to 2 GiB, keeps the kernels large.
_CPU_CHUNK_BYTES = 128 * 2**20
_CUDA_CHUNK_BYTES_MAX = 2 * 2**30


class LeanSearchTransfer(nn.Module):
    """Chunked hard/soft attention with the same results as :class:`SearchTransfer`; no parameters.

    Args:
        chunk_size: LR positions per relevance block (memory of one block: B * Hr*Wr * chunk_size
            floats). None chooses it from a memory budget (128 MiB on CPU; on CUDA a quarter of the free
            memory, at most 2 GiB).

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
            raise ValueError(f"chunk_size must be a positive number of LR positions or None, got {chunk_size}")
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
        batch, channels, height, width = query_lv3.shape
        num_keys = key_lv3.size(2) * key_lv3.size(3)
        chunk_size = self.chunk_size or _chunk_size_for_budget(query_lv3, num_keys, 9 * channels)

        best_relevance, hard_index = _search(query_lv3, key_lv3, chunk_size)
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
            f"query_lv3 and key_lv3 must be (B, C, H, W), got {tuple(query_lv3.shape)} and {tuple(key_lv3.shape)}"
        )
    batch, channels = query_lv3.shape[:2]
    ref_height, ref_width = key_lv3.shape[-2:]
    if key_lv3.shape[:2] != (batch, channels):
        raise ValueError(f"key_lv3 must be ({batch}, {channels}, Hr, Wr) like query_lv3, got {tuple(key_lv3.shape)}")
    for name, value, block in (("value_lv3", value_lv3, 1), ("value_lv2", value_lv2, 2), ("value_lv1", value_lv1, 4)):
        expected = (block * ref_height, block * ref_width)
        if value.ndim != 4 or value.size(0) != batch or tuple(value.shape[-2:]) != expected:
            raise ValueError(
                f"{name} must be ({batch}, C, {expected[0]}, {expected[1]}) for a key_lv3 of "
                f"{ref_height}x{ref_width} (Ref sides multiples of 4), got {tuple(value.shape)}"
            )


def _chunk_size_for_budget(query_lv3: torch.Tensor, num_keys: int, patch_length: int) -> int:
    """LR positions per chunk such that one relevance block and its query patches fit the budget."""
    if query_lv3.device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(query_lv3.device)
        budget = min(free_bytes // 4, _CUDA_CHUNK_BYTES_MAX)
    else:
        budget = _CPU_CHUNK_BYTES
    bytes_per_position = query_lv3.size(0) * (num_keys + patch_length) * query_lv3.element_size()
    return max(1, budget // bytes_per_position)


@torch.no_grad()
def _search(query_lv3: torch.Tensor, key_lv3: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and arg-max over Ref positions of the cosine relevance between 3x3 lv3 patches.

    query_lv3 (B, C, h, w), key_lv3 (B, C, Hr, Wr) -> (B, h*w) best relevance, (B, h*w) int64 index
    into the row-major Hr*Wr Ref positions.
    """
    batch, _, height, width = query_lv3.shape
    key_patches = F.unfold(key_lv3, kernel_size=3, padding=1)  # (B, 9C, Hr*Wr)
    key_patches /= key_patches.norm(dim=1, keepdim=True).clamp_min(_NORMALIZE_EPS)
    key_rows = key_patches.transpose(1, 2)  # (B, Hr*Wr, 9C)
    padded_query = F.pad(query_lv3, (1, 1, 1, 1))

    num_queries = height * width
    best_relevance = query_lv3.new_empty(batch, num_queries)
    hard_index = torch.empty(batch, num_queries, dtype=torch.int64, device=query_lv3.device)
    for start in range(0, num_queries, chunk_size):
        stop = min(start + chunk_size, num_queries)
        # Unfold only the LR rows this chunk touches (plus the one-pixel halo), then take its columns.
        first_row, last_row = start // width, (stop - 1) // width
        band_patches = F.unfold(padded_query[:, :, first_row : last_row + 3], kernel_size=3)
        offset = first_row * width
        query_patches = band_patches[:, :, start - offset : stop - offset]
        query_patches = query_patches / query_patches.norm(dim=1, keepdim=True).clamp_min(_NORMALIZE_EPS)
        relevance = torch.bmm(key_rows, query_patches)  # (B, Hr*Wr, stop - start)
        best_relevance[:, start:stop], hard_index[:, start:stop] = relevance.max(dim=1)
    return best_relevance, hard_index


def _relevance_at(query_lv3: torch.Tensor, key_lv3: torch.Tensor, hard_index: torch.Tensor) -> torch.Tensor:
    """Differentiable cosine between each LR patch and the Ref patch at ``hard_index``: (B, h*w)."""
    query_patches = F.normalize(F.unfold(query_lv3, kernel_size=3, padding=1), dim=1)  # (B, 9C, h*w)
    key_patches = F.normalize(F.unfold(key_lv3, kernel_size=3, padding=1), dim=1)  # (B, 9C, Hr*Wr)
    chosen = key_patches.gather(2, hard_index.unsqueeze(1).expand(-1, key_patches.size(1), -1))
    return (chosen * query_patches).sum(dim=1)


def _shifted(offset: int, size: int) -> tuple[slice, slice]:
    """Destination and source slices of a length-``size`` axis for ``out[q] += src[q - offset]``."""
    return slice(max(offset, 0), size + min(offset, 0)), slice(max(-offset, 0), size - max(offset, 0))


def _transfer(value: torch.Tensor, hard_index: torch.Tensor, lr_size: tuple[int, int], block: int) -> torch.Tensor:
    """The official unfold-gather-fold of one level, as nine shifted gathers of s x s Ref blocks.

    value: (B, C, s*Hr, s*Wr) Ref features (s = ``block``); hard_index: (B, h*w) into Hr*Wr;
    returns (B, C, s*h, s*w): sum over the 3x3 neighbourhood offsets d of the Ref block at
    hard_index(q - d) + d, for every output block q, divided by 9.
    """
    batch, channels = value.shape[:2]
    ref_height, ref_width = value.size(2) // block, value.size(3) // block
    height, width = lr_size

    # Ref as a zero-bordered grid of blocks, one row of C*s*s values per block: the border is the
    # unfold's padding. Filled through views, so no full-size temporary is made.
    blocks = value.new_zeros(batch, ref_height + 2, ref_width + 2, channels * block * block)
    ref_blocks = value.unflatten(3, (ref_width, block)).unflatten(2, (ref_height, block))  # (B, C, Hr, s, Wr, s)
    blocks[:, 1:-1, 1:-1].unflatten(-1, (channels, block, block)).copy_(ref_blocks.permute(0, 2, 4, 1, 3, 5))
    block_rows = blocks.view(-1, blocks.size(-1))

    # Row of each LR position's chosen Ref block in block_rows.
    padded_width = ref_width + 2
    batch_start = torch.arange(batch, device=value.device).unsqueeze(1) * (ref_height + 2) * padded_width
    chosen = batch_start + (hard_index // ref_width + 1) * padded_width + hard_index % ref_width + 1  # (B, h*w)

    transferred = value.new_zeros(batch, channels, block * height, block * width)
    # The output seen as LR positions of s x s blocks: (B, h, w, C, s, s), a view.
    transferred_blocks = transferred.unflatten(3, (width, block)).unflatten(2, (height, block)).permute(
        0, 2, 4, 1, 3, 5
    )
    for dy in (-1, 0, 1):
        target_rows, source_rows = _shifted(dy, height)
        for dx in (-1, 0, 1):
            target_cols, source_cols = _shifted(dx, width)
            picked = block_rows.index_select(0, (chosen + dy * padded_width + dx).flatten())
            picked = picked.view(batch, height, width, channels, block, block)
            transferred_blocks[:, target_rows, target_cols].add_(picked[:, source_rows, source_cols])
    return transferred.div_(_FOLD_DIVISOR)
