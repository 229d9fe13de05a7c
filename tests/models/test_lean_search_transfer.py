"""LeanSearchTransfer against the official outputs and the straightforward SearchTransfer (the oracle)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from ttsr_lightning.models import lean_search_transfer
from ttsr_lightning.models.lean_search_transfer import LeanSearchTransfer
from ttsr_lightning.models.search_transfer import SearchTransfer, TransferredTextures

_INPUT_KEYS = ("lrsr_lv3", "refsr_lv3", "ref_lv1", "ref_lv2", "ref_lv3")


def _lte_like_features(
    batch: int,
    lr_size: tuple[int, int],
    ref_size: tuple[int, int],
    seed: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, ...]:
    """Random post-ReLU (>= 0) query, key and lv1/lv2/lv3 values for an LR and a Ref lv3 size."""
    generator = torch.Generator().manual_seed(seed)
    (height, width), (ref_height, ref_width) = lr_size, ref_size

    def relu_noise(channels: int, h: int, w: int) -> torch.Tensor:
        return torch.randn(batch, channels, h, w, generator=generator, dtype=dtype).relu()

    return (
        relu_noise(256, height, width),
        relu_noise(256, ref_height, ref_width),
        relu_noise(64, 4 * ref_height, 4 * ref_width),
        relu_noise(128, 2 * ref_height, 2 * ref_width),
        relu_noise(256, ref_height, ref_width),
    )


@pytest.fixture(scope="module")
def official_forward(shared_fixtures: Path) -> dict[str, Any]:
    return torch.load(shared_fixtures / "official_small_forward.pt", weights_only=False)


@pytest.mark.parametrize("case", ["square_b1", "rect_b2"])
@pytest.mark.parametrize("chunk_size", [None, 7, 100])
def test_reproduces_official_search_transfer(
    official_forward: dict[str, Any], case: str, chunk_size: int | None
) -> None:
    # The fixtures' inputs have a top-2 relevance gap >= 3e-6, so the arg-max must agree exactly.
    data = official_forward if case == "square_b1" else official_forward["cases"][case]
    intermediates, outputs = data["intermediates"], data["outputs"]
    result = LeanSearchTransfer(chunk_size)(*(intermediates[key] for key in _INPUT_KEYS))
    assert torch.equal(result.hard_index, intermediates["hard_index"])
    assert result.soft_attention.shape == outputs["S"].shape
    for name, official in (
        ("soft_attention", "S"),
        ("t_lv3", "T_lv3"),
        ("t_lv2", "T_lv2"),
        ("t_lv1", "T_lv1"),
    ):
        torch.testing.assert_close(getattr(result, name), outputs[official], rtol=0, atol=1e-5, msg=name)


def _near_tie_disagreements(
    features: tuple[torch.Tensor, ...], reference: TransferredTextures, lean: TransferredTextures
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the arg-maxes differ: a (B, h*w) mask and the reference-relevance gap at those positions."""
    query, key = features[0], features[1]
    query_patches = F.normalize(F.unfold(query, kernel_size=3, padding=1), dim=1)
    key_patches = F.normalize(F.unfold(key, kernel_size=3, padding=1), dim=1)
    relevance = torch.bmm(key_patches.transpose(1, 2), query_patches)  # (B, Hr*Wr, h*w)
    disagree = reference.hard_index != lean.hard_index
    gap = relevance.gather(1, reference.hard_index.unsqueeze(1)) - relevance.gather(
        1, lean.hard_index.unsqueeze(1)
    )
    return disagree, gap.squeeze(1)[disagree]


@pytest.mark.parametrize(("chunk_size", "lr_size"), [(None, (22, 17)), (37, (22, 17)), (1, (6, 5))])
def test_matches_the_straightforward_formulation_on_random_features(
    chunk_size: int | None, lr_size: tuple[int, int]
) -> None:
    features = _lte_like_features(batch=2, lr_size=lr_size, ref_size=(20, 24), seed=0)
    reference = SearchTransfer()(*features)
    lean = LeanSearchTransfer(chunk_size)(*features)

    disagree, gaps = _near_tie_disagreements(features, reference, lean)
    assert disagree.sum().item() <= 0.002 * disagree.numel(), "arg-max differs beyond rare near-ties"
    assert (gaps.abs() < 1e-5).all(), f"arg-max differs where the best Ref patch is clear: gaps {gaps}"
    torch.testing.assert_close(lean.soft_attention, reference.soft_attention, rtol=0, atol=1e-5)

    # T must agree wherever no LR position in the 3x3 neighbourhood picked a different patch.
    batch, _, height, width = features[0].shape
    disagree_map = disagree.view(batch, 1, height, width).float()
    unaffected = F.max_pool2d(disagree_map, kernel_size=3, stride=1, padding=1) == 0
    for name, block in (("t_lv3", 1), ("t_lv2", 2), ("t_lv1", 4)):
        mask = unaffected.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)
        lean_level, reference_level = getattr(lean, name), getattr(reference, name)
        assert lean_level.shape == reference_level.shape
        difference = (lean_level - reference_level).abs().masked_fill(~mask, 0)
        assert difference.max().item() <= 1e-5, name


def test_gradients_match_the_straightforward_formulation() -> None:
    def weighted_outputs(module: torch.nn.Module) -> list[torch.Tensor | None]:
        features = [
            t.requires_grad_() for t in _lte_like_features(2, (5, 6), (4, 7), seed=1, dtype=torch.float64)
        ]
        result = module(*features)
        generator = torch.Generator().manual_seed(2)
        outputs = (result.soft_attention, result.t_lv3, result.t_lv2, result.t_lv1)
        objective = sum(
            (out * torch.randn(out.shape, generator=generator, dtype=out.dtype)).sum() for out in outputs
        )
        objective.backward()
        return [feature.grad for feature in features]

    reference_grads = weighted_outputs(SearchTransfer())
    lean_grads = weighted_outputs(LeanSearchTransfer(chunk_size=4))
    for name, lean_grad, reference_grad in zip(_INPUT_KEYS, lean_grads, reference_grads, strict=True):
        assert lean_grad is not None and reference_grad is not None, name
        assert reference_grad.abs().max() > 0, name  # S reaches query/key, T reaches the values
        torch.testing.assert_close(lean_grad, reference_grad, rtol=0, atol=1e-12, msg=name)


def test_soft_attention_is_the_same_with_and_without_autograd() -> None:
    features = _lte_like_features(1, (6, 5), (6, 5), seed=3)
    with torch.no_grad():
        without_graph = LeanSearchTransfer()(*features)
    with_graph = LeanSearchTransfer()(features[0].requires_grad_(), *features[1:])
    assert with_graph.soft_attention.requires_grad
    torch.testing.assert_close(with_graph.soft_attention, without_graph.soft_attention, rtol=0, atol=1e-6)
    assert torch.equal(with_graph.hard_index, without_graph.hard_index)


@pytest.mark.parametrize("direct_max_elements", [0, 10**9], ids=["lean", "direct"])
def test_search_runs_in_fp32_under_bf16_autocast(direct_max_elements: int) -> None:
    features = _lte_like_features(2, (9, 7), (8, 10), seed=5)
    search = LeanSearchTransfer(direct_max_elements=direct_max_elements)
    with torch.no_grad():
        reference = search(*features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = search(*features)
    assert torch.equal(autocast.hard_index, reference.hard_index)
    assert autocast.soft_attention.dtype == torch.float32
    torch.testing.assert_close(autocast.soft_attention, reference.soft_attention, rtol=0, atol=0)


def test_small_searches_take_the_straightforward_path_with_its_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At most the device's threshold of relevance elements (B x h*w x Hr*Wr) the module is
    SearchTransfer, bit for bit; above it, or with several references or an explicit chunk size, the
    tiled path. (On this CPU the threshold is 0: the tiled path wins at every size; set here.)"""
    monkeypatch.setitem(lean_search_transfer.DIRECT_SEARCH_MAX_ELEMENTS, "cpu", 5**4)
    small = _lte_like_features(1, (5, 5), (5, 5), seed=6)
    large = _lte_like_features(1, (6, 5), (5, 5), seed=6)
    module = LeanSearchTransfer()
    for name, expected in zip(TransferredTextures._fields, SearchTransfer()(*small), strict=True):
        assert torch.equal(getattr(module(*small), name), expected), name
    for name, expected in zip(
        TransferredTextures._fields, LeanSearchTransfer(direct_max_elements=0)(*large), strict=True
    ):
        assert torch.equal(getattr(module(*large), name), expected), name
    query, key = small[0], small[1]
    assert module._direct(query, [key]) and not module._direct(large[0], [large[1]])
    assert not module._direct(query, [key, key])
    assert not LeanSearchTransfer(chunk_size=3)._direct(query, [key])
    with pytest.raises(ValueError, match="direct_max_elements"):
        LeanSearchTransfer(direct_max_elements=-1)


_FUSED_AGAINST_ORACLE = """
import torch
from ttsr_lightning.models import patch_search, relevance_triton

generator = torch.Generator().manual_seed(7)
rows, cols, ref_height, ref_width = 3, 4, 5, 7
pixel_dots = torch.randn(2, (rows + 2) * (cols + 2), (ref_height + 2) * (ref_width + 2), generator=generator)
key_scale = torch.rand(2, ref_height * ref_width, generator=generator)
key_scale[1, :] = 0  # every relevance of item 1 is 0: the first position wins
key_scale[0, 30:] = key_scale[0, :5]  # equal scales in the last of three blocks of 16 positions
shape = ((rows, cols), (ref_height, ref_width))
expected = patch_search.relevance_max(pixel_dots, key_scale, *shape)
best, index = relevance_triton.relevance_max(pixel_dots, key_scale, *shape, block=16)
assert torch.equal(best, expected[0]), (best, expected[0])
assert torch.equal(index, expected[1]), (index, expected[1])
assert (index[1] == 0).all()
print("equal")
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs the triton package")
def test_the_fused_pass_and_its_torch_oracle_agree_bit_for_bit() -> None:
    """models/relevance_triton.py against patch_search.relevance_max in Triton's interpreter on
    the CPU (TRITON_INTERPRET=1, read when triton is imported: a fresh process). Ragged Ref blocks,
    several batch items, and ties (zero Ref norms) resolved to the first position. Needs the triton
    package (a ~290 MB wheel; not a dev dependency): skipped without it."""
    completed = subprocess.run(
        [sys.executable, "-c", _FUSED_AGAINST_ORACLE],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=dict(os.environ, TRITON_INTERPRET="1"),
    )
    assert completed.stdout.strip() == "equal", completed.stderr[-3000:]


def test_rejects_inconsistent_shapes_and_chunk_sizes() -> None:
    query, key, value_lv1, value_lv2, value_lv3 = _lte_like_features(1, (4, 4), (4, 4), seed=4)
    with pytest.raises(ValueError, match="value_lv1"):
        LeanSearchTransfer()(query, key, value_lv1[..., :-2], value_lv2, value_lv3)
    with pytest.raises(ValueError, match="key_lv3"):
        LeanSearchTransfer()(query, key[:, :128], value_lv1, value_lv2, value_lv3)
    with pytest.raises(ValueError, match="chunk_size"):
        LeanSearchTransfer(chunk_size=0)
