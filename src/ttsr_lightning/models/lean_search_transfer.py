"""Memory-lean search and transfer: the results of :class:`SearchTransfer` without its big tensors.

The straightforward formulation holds the whole relevance matrix (B, Hr*Wr, h*w), the unfolded
3x3 patches (9x256 values per position) and, at every level, the unfolded Ref features (one 64x12x12
column per Ref position at lv1): 13.7 GiB at LR 256x192 with a same-size reference (measured, CPU).
:class:`LeanSearchTransfer` computes the same thing in memory linear in the image size, and faster:
the search in tiles of LR positions (:mod:`~ttsr_lightning.models.patch_search`), the transfer as
nine gathers of Ref blocks (:mod:`~ttsr_lightning.models.block_transfer`). Small searches (one
reference, below :data:`DIRECT_SEARCH_MAX_ELEMENTS`) run the straightforward way, which is faster there.

Several references (keys and values given as sequences, one entry per reference, each its own size)
are searched as one: the result is :class:`SearchTransfer` run over the concatenation of every
reference's patches; ``hard_index`` then counts positions in the concatenation
(:func:`~ttsr_lightning.models.patch_search.split_hard_index` maps it back to a reference and a
position in it).

Results equal the reference's up to float rounding (~1e-6); the arg-max can differ only where two
Ref patches are within rounding of each other (a true near-tie). Autograd works: S is recomputed as
a differentiable cosine at the chosen positions, and the transfer is differentiable in the values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import torch
from torch import nn

from ttsr_lightning.models.block_transfer import TEXTURE_BLOCKS, chosen_blocks, transfer_grid, window_rows
from ttsr_lightning.models.patch_search import check_relevance_kernel, relevance_at, search, split_unchecked
from ttsr_lightning.models.search_transfer import SearchTransfer, TransferredTextures

# One reference's features (a tensor) or several references' (a sequence, one tensor each).
ReferenceFeatures: TypeAlias = torch.Tensor | Sequence[torch.Tensor]

_SEARCH_ELEMENT_BYTES = 4
# Largest relevance (B x LR positions x Ref positions, one reference) searched and transferred the
# straightforward way (SearchTransfer: one matmul over unfolded patches, a handful of kernels) instead of
# in tiles: below it the lean path's fixed cost (~60 small kernels) outweighs its 9x fewer FLOPs and
# smaller tensors. Measured by `benchmarks/search_transfer.py --crossover` (benchmarks/RESULTS.md). On
# this project's CPU the tiled path is as fast from LR 3x3 and faster from 6x6 on: never direct. On an
# H200 the straightforward one won at LR 40x40 (1.3 against 3.2 ms; 2.6 M elements) and lost at 125x83
# (13.5 against 8.4 ms; 108 M): the linear interpolation of those two points crosses at ~29 M elements,
# which puts the training size (batch 9 at LR 40x40: 23 M) on the straightforward side.
DIRECT_SEARCH_MAX_ELEMENTS = {"cpu": 0, "cuda": 29_000_000}


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
        relevance_kernel: what computes each relevance tile's patch sums, Ref-norm scaling and max in
            the tiled search: ``"torch"`` (torch passes, the default) or ``"triton"`` (one fused
            Triton kernel, for CUDA tensors only: opt-in, never yet run on a GPU; a kernel that fails
            falls back to the torch passes with one warning, see
            :mod:`~ttsr_lightning.models.patch_search`). The same results either way.

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
    (:func:`~ttsr_lightning.models.patch_search.split_hard_index` inverts this). One reference, as a
    tensor or a sequence of one, gives exactly the one-reference result. Returns :class:`TransferredTextures`.
    """

    def __init__(
        self,
        chunk_size: int | None = None,
        direct_max_elements: int | None = None,
        relevance_kernel: str = "torch",
    ) -> None:
        super().__init__()
        check_relevance_kernel(relevance_kernel)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(
                f"chunk_size must be a positive number of LR positions or None, got {chunk_size}"
            )
        if direct_max_elements is not None and direct_max_elements < 0:
            raise ValueError(f"direct_max_elements must be >= 0 or None, got {direct_max_elements}")
        self.chunk_size = chunk_size
        self.direct_max_elements = direct_max_elements
        self.relevance_kernel = relevance_kernel
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
        best_relevance, hard_index = self.tiled_search(query_lv3, keys)
        if torch.is_grad_enabled() and (query_lv3.requires_grad or any(key.requires_grad for key in keys)):
            # The search ran without a graph (keeping one would keep every relevance block for the
            # backward). The max of the relevance has the same gradient as the relevance at the
            # arg-max, so S is recomputed there, differentiably and in memory linear in h*w.
            reference, position = split_unchecked(hard_index, ref_sizes)
            soft_attention = relevance_at(query_lv3, keys, reference, position)
        else:
            soft_attention = best_relevance

        chosen = chosen_blocks(hard_index, ref_sizes, (height, width))
        rows = window_rows(chosen, (0, 0, height, width))
        t_lv3, t_lv2, t_lv1 = (
            transfer_grid(values, rows, ref_sizes, (height, width), block)
            for values, block in zip((values_lv3, values_lv2, values_lv1), TEXTURE_BLOCKS, strict=True)
        )
        soft_attention = soft_attention.view(batch, 1, height, width)
        return TransferredTextures(soft_attention, hard_index, t_lv3, t_lv2, t_lv1)

    def tiled_search(
        self, query_lv3: torch.Tensor, keys: Sequence[torch.Tensor], tile_bytes: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The search in relevance tiles with this module's settings, without a graph: tiles of
        ``chunk_size`` LR positions, or (given ``tile_bytes``, or with ``chunk_size`` None) of
        ``tile_bytes`` of memory, each computed by ``relevance_kernel``. query_lv3: (B, C, h, w);
        keys: R tensors (B, C, Hi, Wi). Returns (B, h*w) S and (B, h*w) int64 ``hard_index``
        (:func:`~ttsr_lightning.models.patch_search.search`)."""
        chunk_size = self.chunk_size if tile_bytes is None else None
        return search(query_lv3, keys, chunk_size, tile_bytes, self.relevance_kernel)

    def _direct(self, query_lv3: torch.Tensor, keys: Sequence[torch.Tensor]) -> bool:
        """Whether this search is small enough for the straightforward formulation."""
        if self.chunk_size is not None or len(keys) != 1:
            return False
        limit = self.direct_max_elements
        if limit is None:
            limit = DIRECT_SEARCH_MAX_ELEMENTS.get(query_lv3.device.type, 0)
        batch, _, height, width = query_lv3.shape
        return batch * height * width * keys[0].size(2) * keys[0].size(3) <= limit


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
