"""Several references: LeanSearchTransfer and TTSRGenerator against SearchTransfer run per reference.

The oracle (the definition of the multi-reference result): run the official :class:`SearchTransfer`
on each reference; per LR position the reference with the best S wins (torch.max over references: a
tie goes to the lowest reference number), giving S, the reference r and its own hard index j, and
``hard_index = H0*W0 + ... + H(r-1)*W(r-1) + j``. The textures are the official gather-fold of the
value patches chosen per position, each patch unfolded from its own reference (with that
reference's zero border, the unfold padding): the fold sums, for an output block, the patches
chosen by its nine neighbouring LR positions, which may come from different references.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from helpers.config import TINY_GENERATOR
from ttsr_lightning.models import (
    LeanSearchTransfer,
    SearchTransfer,
    TransferredTextures,
    TTSRGenerator,
    split_hard_index,
)
from ttsr_lightning.models.search_transfer import _FOLD_DIVISOR, _LV1_PATCH, _LV2_PATCH, _LV3_PATCH

# lv3 sizes (rows, cols) of three references of different shapes (images 16x12, 8x20, 12x12).
REF_SIZES = [(4, 3), (2, 5), (3, 3)]
# Two patches whose relevance differs by less than this are a near-tie: float rounding may pick
# either, so the lean path and the oracle may disagree there (and only there).
NEAR_TIE = 1e-5

Features = tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]


def lte_like_features(
    batch: int,
    lr_size: tuple[int, int],
    ref_sizes: list[tuple[int, int]],
    seed: int,
    dtype: torch.dtype = torch.float32,
) -> Features:
    """Random post-ReLU query, and per reference a key and lv1/lv2/lv3 values, for lv3 sizes."""
    generator = torch.Generator().manual_seed(seed)

    def relu_noise(channels: int, height: int, width: int) -> torch.Tensor:
        return torch.randn(batch, channels, height, width, generator=generator, dtype=dtype).relu()

    query = relu_noise(256, *lr_size)
    keys = [relu_noise(256, h, w) for h, w in ref_sizes]
    values_lv1 = [relu_noise(64, 4 * h, 4 * w) for h, w in ref_sizes]
    values_lv2 = [relu_noise(128, 2 * h, 2 * w) for h, w in ref_sizes]
    values_lv3 = [relu_noise(256, h, w) for h, w in ref_sizes]
    return query, keys, values_lv1, values_lv2, values_lv3


def fold_chosen_patches(
    values: list[torch.Tensor],
    hard_index: torch.Tensor,
    output_size: tuple[int, int],
    patch: tuple[int, int, int],
) -> torch.Tensor:
    """The official unfold-gather-fold with every reference's patches side by side (each unfolded alone)."""
    kernel, padding, stride = patch
    patches = torch.cat(
        [F.unfold(value, kernel_size=kernel, padding=padding, stride=stride) for value in values], dim=2
    )
    chosen = patches.gather(2, hard_index.unsqueeze(1).expand(-1, patches.size(1), -1))
    folded = F.fold(chosen, output_size=output_size, kernel_size=kernel, padding=padding, stride=stride)
    return folded / _FOLD_DIVISOR


def oracle(
    query: torch.Tensor,
    keys: list[torch.Tensor],
    values_lv1: list[torch.Tensor],
    values_lv2: list[torch.Tensor],
    values_lv3: list[torch.Tensor],
) -> TransferredTextures:
    """SearchTransfer per reference, combined by the best relevance (see the module docstring)."""
    batch, _, height, width = query.shape
    per_reference = [
        SearchTransfer()(query, *features)
        for features in zip(keys, values_lv1, values_lv2, values_lv3, strict=True)
    ]
    soft_attention, reference = torch.stack([result.soft_attention for result in per_reference]).max(dim=0)
    reference = reference.flatten(1)  # (B, h*w)
    own_index = torch.stack([result.hard_index for result in per_reference]).gather(0, reference.unsqueeze(0))
    first_positions = torch.tensor([0] + [h * w for h, w in (key.shape[-2:] for key in keys)][:-1]).cumsum(0)
    hard_index = first_positions[reference] + own_index.squeeze(0)
    return TransferredTextures(
        soft_attention=soft_attention,
        hard_index=hard_index,
        t_lv3=fold_chosen_patches(values_lv3, hard_index, (height, width), _LV3_PATCH),
        t_lv2=fold_chosen_patches(values_lv2, hard_index, (2 * height, 2 * width), _LV2_PATCH),
        t_lv1=fold_chosen_patches(values_lv1, hard_index, (4 * height, 4 * width), _LV1_PATCH),
    )


def top2_gaps(query: torch.Tensor, keys: list[torch.Tensor]) -> torch.Tensor:
    """(B, h*w) gap between the best and second-best relevance over ALL references (float64)."""
    query_patches = F.normalize(F.unfold(query.double(), kernel_size=3, padding=1), dim=1)
    key_patches = torch.cat(
        [F.normalize(F.unfold(key.double(), kernel_size=3, padding=1), dim=1) for key in keys], dim=2
    )
    top2 = torch.bmm(key_patches.transpose(1, 2), query_patches).topk(2, dim=1).values  # (B, 2, h*w)
    return top2[:, 0] - top2[:, 1]


def assert_matches_oracle(features: Features, lean: TransferredTextures) -> dict[str, int]:
    """Lean == oracle within 1e-5, except textures next to an arg-max disagreement at a near-tie.

    Returns the counts: LR positions, near-ties (top-2 over all references within NEAR_TIE),
    disagreements (all of them near-ties).
    """
    query, keys = features[0], features[1]
    expected = oracle(*features)
    near_tie = top2_gaps(query, keys) < NEAR_TIE
    disagree = lean.hard_index != expected.hard_index
    assert not (disagree & ~near_tie).any(), "arg-max differs where the best patch is clear"
    torch.testing.assert_close(lean.soft_attention, expected.soft_attention, rtol=0, atol=1e-5)

    # A texture block sums the patches chosen by its 3x3 LR neighbourhood: compare where none differs.
    batch, _, height, width = query.shape
    disagree_map = disagree.view(batch, 1, height, width).float()
    unaffected = F.max_pool2d(disagree_map, kernel_size=3, stride=1, padding=1) == 0
    for name, block in (("t_lv3", 1), ("t_lv2", 2), ("t_lv1", 4)):
        mask = unaffected.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)
        lean_level, expected_level = getattr(lean, name), getattr(expected, name)
        assert lean_level.shape == expected_level.shape, name
        difference = (lean_level - expected_level).abs().masked_fill(~mask, 0)
        assert difference.max().item() <= 1e-5, name
    return {
        "positions": disagree.numel(),
        "near_ties": int(near_tie.sum()),
        "disagreements": int(disagree.sum()),
    }


@pytest.mark.parametrize(
    ("chunk_size", "lr_size", "seed"),
    [(None, (9, 7), 0), (5, (9, 7), 1), (1, (6, 5), 2), (None, (23, 19), 3)],
)
def test_matches_the_per_reference_oracle(
    chunk_size: int | None, lr_size: tuple[int, int], seed: int
) -> None:
    features = lte_like_features(2, lr_size, REF_SIZES, seed)
    lean = LeanSearchTransfer(chunk_size)(*features)

    counts = assert_matches_oracle(features, lean)
    print(f"near-ties {counts}")  # shown with pytest -s
    assert counts["near_ties"] <= 0.01 * counts["positions"]
    # The case exercises what makes several references hard: every reference is chosen somewhere,
    # and some output blocks sum patches from different references (neighbours chose differently).
    reference, _ = split_hard_index(lean.hard_index, REF_SIZES)
    assert set(reference.unique().tolist()) == {0, 1, 2}
    reference_map = reference.view(2, *lr_size)
    assert (reference_map[:, 1:] != reference_map[:, :-1]).any()


def test_a_tie_goes_to_the_earlier_reference() -> None:
    """The same key twice: every relevance ties exactly, so reference 0 must win everywhere."""
    query, (key,), (value_lv1,), (value_lv2,), (value_lv3,) = lte_like_features(2, (6, 5), [(3, 4)], seed=4)
    other = lte_like_features(2, (6, 5), [(3, 4)], seed=5)
    single = LeanSearchTransfer(chunk_size=7)(query, key, value_lv1, value_lv2, value_lv3)
    references = ([key, key], [value_lv1, other[2][0]], [value_lv2, other[3][0]], [value_lv3, other[4][0]])
    twice = LeanSearchTransfer(chunk_size=7)(query, *references)
    assert torch.equal(twice.hard_index, single.hard_index)  # all in reference 0
    for name in ("soft_attention", "t_lv3", "t_lv2", "t_lv1"):
        assert torch.equal(getattr(twice, name), getattr(single, name)), name
    assert torch.equal(oracle(query, *references).hard_index, single.hard_index)


def test_a_list_of_one_is_the_plain_call() -> None:
    query, (key,), (value_lv1,), (value_lv2,), (value_lv3,) = lte_like_features(2, (9, 7), [(5, 6)], seed=6)
    plain = LeanSearchTransfer(chunk_size=11)(query, key, value_lv1, value_lv2, value_lv3)
    listed = LeanSearchTransfer(chunk_size=11)(query, [key], [value_lv1], [value_lv2], (value_lv3,))
    for name, tensor in plain._asdict().items():
        assert torch.equal(getattr(listed, name), tensor), name


def test_gradients_match_the_oracle() -> None:
    def gradients(search_transfer: Any) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        query, *references = lte_like_features(
            2, (5, 6), [(2, 3), (3, 2), (1, 4)], seed=7, dtype=torch.float64
        )
        query.requires_grad_()
        for features in references:
            for feature in features:
                feature.requires_grad_()
        result = search_transfer(query, *references)
        generator = torch.Generator().manual_seed(8)
        outputs = (result.soft_attention, result.t_lv3, result.t_lv2, result.t_lv1)
        objective = sum(
            (out * torch.randn(out.shape, generator=generator, dtype=out.dtype)).sum() for out in outputs
        )
        objective.backward()
        leaves = [query, *(feature for features in references for feature in features)]
        return result.hard_index, [leaf.grad for leaf in leaves]

    lean_index, lean_grads = gradients(LeanSearchTransfer(chunk_size=4))
    oracle_index, oracle_grads = gradients(oracle)
    assert torch.equal(lean_index, oracle_index)
    assert len(set(split_hard_index(lean_index, [(2, 3), (3, 2), (1, 4)])[0].flatten().tolist())) > 1
    for number, (lean_grad, oracle_grad) in enumerate(zip(lean_grads, oracle_grads, strict=True)):
        assert lean_grad is not None and oracle_grad is not None, number
        torch.testing.assert_close(lean_grad, oracle_grad, rtol=0, atol=1e-12, msg=f"input {number}")
    assert oracle_grads[0] is not None and oracle_grads[0].abs().max() > 0  # S reaches the query


def test_split_hard_index() -> None:
    hard_index = torch.tensor([[0, 5, 6, 9, 10, 12]])
    reference, position = split_hard_index(hard_index, [(2, 3), (1, 4), (1, 3)])
    assert reference.tolist() == [[0, 0, 1, 1, 2, 2]]
    assert position.tolist() == [[0, 5, 0, 3, 0, 2]]
    with pytest.raises(ValueError, match=r"hard_index must lie in \[0, 13\)"):
        split_hard_index(torch.tensor([13]), [(2, 3), (1, 4), (1, 3)])


def test_rejects_inconsistent_references() -> None:
    query, keys, values_lv1, values_lv2, values_lv3 = lte_like_features(1, (4, 4), REF_SIZES, seed=9)
    lean = LeanSearchTransfer()
    with pytest.raises(ValueError, match="same number of references"):
        lean(query, keys, values_lv1[:2], values_lv2, values_lv3)
    with pytest.raises(ValueError, match="all be tensors .* or all sequences"):
        lean(query, keys[0], values_lv1, values_lv2, values_lv3)
    with pytest.raises(ValueError, match=r"value_lv1\[1\] must be \(1, C, 8, 20\)"):
        lean(query, keys, [values_lv1[0], values_lv1[1][..., :-4], values_lv1[2]], values_lv2, values_lv3)
    with pytest.raises(ValueError, match=r"value_lv2\[2\] must have 128 channels like value_lv2\[0\]"):
        lean(query, keys, values_lv1, [*values_lv2[:2], values_lv2[2][:, :64]], values_lv3)
    with pytest.raises(ValueError, match=r"key_lv3\[1\] must be \(1, 256, Hr, Wr\)"):
        lean(query, [keys[0], keys[1][:, :128], keys[2]], values_lv1, values_lv2, values_lv3)


class _LargestTensors(TorchDispatchMode):
    """Records the largest tensor any op makes and the Ref positions of every bmm (one relevance tile)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.bmm_columns: list[int] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        sizes = [leaf.numel() for leaf in tree_leaves(out) if isinstance(leaf, torch.Tensor)]
        self.largest = max([self.largest, *sizes])
        if func is torch.ops.aten.bmm.default:
            self.bmm_columns.append(out.size(2))
        return out


def test_memory_is_linear_in_the_reference_area_not_a_canvas() -> None:
    # A wide and a tall reference: stitched on one canvas they would take 32 x 30 lv3 positions.
    ref_sizes = [(2, 30), (30, 2)]
    features = lte_like_features(1, (5, 4), ref_sizes, seed=10)
    with torch.no_grad(), _LargestTensors() as recorder:
        LeanSearchTransfer(chunk_size=6)(*features)
    canvas_lv1 = 64 * (4 * sum(h for h, _ in ref_sizes)) * (4 * max(w for _, w in ref_sizes))
    block_table_lv1 = 64 * 16 * sum((h + 2) * (w + 2) for h, w in ref_sizes)  # both, zero borders included
    assert recorder.largest <= block_table_lv1 < canvas_lv1 / 3
    # One relevance tile against one reference at a time, never against the concatenation.
    assert recorder.bmm_columns and max(recorder.bmm_columns) == max((h + 2) * (w + 2) for h, w in ref_sizes)


# --- the generator ---


def small_generator(**kwargs: Any) -> TTSRGenerator:
    torch.manual_seed(0)
    return TTSRGenerator(**{**TINY_GENERATOR, **kwargs})


def generator_inputs(
    ref_sizes: list[tuple[int, int]], lr_size: tuple[int, int] = (6, 5), batch: int = 2
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """lr, lr_up and lists of ref / ref_down_up images in [-1, 1], reference sizes in pixels."""
    generator = torch.Generator().manual_seed(11)
    (h, w) = lr_size

    def image(height: int, width: int) -> torch.Tensor:
        return torch.rand(batch, 3, height, width, generator=generator) * 2 - 1

    refs = [image(*size) for size in ref_sizes]
    return image(h, w), image(4 * h, 4 * w), refs, [image(*size) for size in ref_sizes]


def test_generator_with_one_listed_reference_is_the_plain_call() -> None:
    generator = small_generator()
    lr, lr_up, (ref,), (ref_down_up,) = generator_inputs([(20, 28)])
    plain = generator(lr, lr_up, ref, ref_down_up)
    for listed in (generator(lr, lr_up, [ref], [ref_down_up]), generator(lr, lr_up, (ref,), (ref_down_up,))):
        for name, tensor in plain._asdict().items():
            assert torch.equal(getattr(listed, name), tensor), name


def test_generator_with_several_references_matches_the_oracle() -> None:
    generator = small_generator().eval()
    ref_sizes = [(16, 12), (8, 20), (12, 12)]  # lv3 4x3, 2x5, 3x3 (REF_SIZES)
    lr, lr_up, refs, refs_down_up = generator_inputs(ref_sizes)
    with torch.no_grad():
        out = generator(lr, lr_up, refs, refs_down_up)
        assert generator.lte is not None
        query = generator.lte(lr_up)[2]
        keys = [generator.lte(image)[2] for image in refs_down_up]
        values_lv1, values_lv2, values_lv3 = (
            list(level) for level in zip(*map(generator.lte, refs), strict=True)
        )
        features: Features = (query, keys, values_lv1, values_lv2, values_lv3)
        counts = assert_matches_oracle(features, TransferredTextures(*out[1:]))
        assert counts["disagreements"] == 0
        expected = oracle(*features)
        sr = generator.main_net(lr, expected.soft_attention, expected.t_lv3, expected.t_lv2, expected.t_lv1)
    torch.testing.assert_close(out.sr, sr, rtol=0, atol=1e-5)
    assert out.hard_index is not None and out.hard_index.max() < sum(h * w // 16 for h, w in ref_sizes)


def test_generator_gradients_reach_the_extractor_through_every_reference() -> None:
    generator = small_generator()
    ref_sizes = [(16, 12), (8, 20), (12, 12)]
    lr, lr_up, refs, refs_down_up = generator_inputs(ref_sizes, lr_size=(10, 9), batch=1)
    assert generator.lte is not None
    features: dict[int, tuple[torch.Tensor, ...]] = {}  # the LTE's levels of each image, by its storage

    def keep_levels(module: Any, args: tuple[torch.Tensor], levels: tuple[torch.Tensor, ...]) -> None:
        for level in levels:
            level.retain_grad()
        features[args[0].data_ptr()] = levels

    hook = generator.lte.register_forward_hook(keep_levels)
    try:
        out = generator(lr, lr_up, refs, refs_down_up)
        out.sr.sum().backward()
    finally:
        hook.remove()
    assert out.hard_index is not None  # an LR of 10x9: each reference is the best somewhere
    chosen, _ = split_hard_index(out.hard_index, [(h // 4, w // 4) for h, w in ref_sizes])
    assert set(chosen.flatten().tolist()) == {0, 1, 2}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.lte.parameters())
    for number, (ref, ref_down_up) in enumerate(zip(refs, refs_down_up, strict=True)):
        key_lv3 = features[ref_down_up.data_ptr()][2]  # through S
        assert key_lv3.grad is not None and key_lv3.grad.abs().sum() > 0, number
        for level, values in enumerate(features[ref.data_ptr()], start=1):  # through T
            assert values.grad is not None and values.grad.abs().sum() > 0, (number, f"lv{level}")


def test_generator_rejects_inconsistent_references() -> None:
    generator = small_generator()
    lr, lr_up, refs, refs_down_up = generator_inputs([(16, 12), (8, 20), (12, 12)])
    with pytest.raises(ValueError, match="same number of references"):
        generator(lr, lr_up, refs, refs_down_up[:2])
    with pytest.raises(ValueError, match="both be tensors .* or both sequences"):
        generator(lr, lr_up, refs[0], refs_down_up)
    with pytest.raises(ValueError, match=r"ref\[1\] and ref_down_up\[1\] must both be \(2, 3, H, W\)"):
        generator(lr, lr_up, refs, [refs_down_up[0], refs_down_up[1][..., :-4], refs_down_up[2]])
    odd = [refs[0], refs[1], refs[2][..., :-2]]
    with pytest.raises(ValueError, match=r"ref\[2\] must have sides that are multiples of 4, got 12x10"):
        generator(lr, lr_up, odd, [refs_down_up[0], refs_down_up[1], refs_down_up[2][..., :-2]])
    with pytest.raises(ValueError, match="ref must have sides that are multiples of 4"):
        generator(lr, lr_up, refs[2][..., :-2], refs_down_up[2][..., :-2])
    with pytest.raises(ValueError, match="3 references need search_transfer='lean'"):
        small_generator(search_transfer="reference")(lr, lr_up, refs, refs_down_up)
