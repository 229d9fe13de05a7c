"""SearchTransfer against a brute-force loop over LR/Ref patch pairs (the official semantics)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ttsr_lightning.models import SearchTransfer, TransferredTextures


def patch_vector(features: torch.Tensor, row: int, col: int) -> torch.Tensor:
    """The 3x3 patch of (C, H, W) features centred at (row, col), zero outside, flattened."""
    padded = F.pad(features, (1, 1, 1, 1))
    return padded[:, row : row + 3, col : col + 3].flatten()


def brute_force(
    query: torch.Tensor, key: torch.Tensor, values: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """One batch item, float64: S, arg-max index, top-2 margin, and T at lv3/lv2/lv1 (scales 1, 2, 4).

    Relevance = cosine of every (LR patch, Ref patch) pair. For the best Ref patch of each LR
    position, the value patch of side 3*scale around the Ref position is added at the same offset
    around the LR position (both clipped at the borders), and every sum is divided by 9.
    """
    _, height, width = query.shape
    _, ref_height, ref_width = key.shape
    keys = [F.normalize(patch_vector(key, r, c), dim=0) for r in range(ref_height) for c in range(ref_width)]
    best_value = torch.zeros(height * width, dtype=torch.float64)
    best_index = torch.zeros(height * width, dtype=torch.int64)
    margin = torch.zeros(height * width, dtype=torch.float64)
    for position in range(height * width):
        q = F.normalize(patch_vector(query, position // width, position % width), dim=0)
        cosines = torch.stack([torch.dot(q, k) for k in keys])
        top2 = torch.topk(cosines, 2).values
        best_value[position], best_index[position] = cosines.max(), cosines.argmax()
        margin[position] = top2[0] - top2[1]
    textures = []
    for value, scale in zip(values, (1, 2, 4), strict=True):
        transferred = torch.zeros(value.shape[0], height * scale, width * scale, dtype=torch.float64)
        for position in range(height * width):
            row, col = position // width, position % width
            ref_row, ref_col = divmod(int(best_index[position]), ref_width)
            for dr in range(-scale, 2 * scale):
                for dc in range(-scale, 2 * scale):
                    out_r, out_c = row * scale + dr, col * scale + dc
                    in_r, in_c = ref_row * scale + dr, ref_col * scale + dc
                    inside_out = 0 <= out_r < height * scale and 0 <= out_c < width * scale
                    inside_ref = 0 <= in_r < value.shape[1] and 0 <= in_c < value.shape[2]
                    if inside_out and inside_ref:
                        transferred[:, out_r, out_c] += value[:, in_r, in_c]
        textures.append(transferred / 9)
    return best_value, best_index, margin, textures


def random_features(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return F.relu(torch.randn(*shape, generator=generator))  # post-ReLU like the LTE


def test_matches_brute_force_loop() -> None:
    generator = torch.Generator().manual_seed(3)
    batch, channels, (height, width), (ref_height, ref_width) = 2, 5, (3, 4), (4, 3)
    query = random_features(generator, batch, channels, height, width)
    key = random_features(generator, batch, channels, ref_height, ref_width)
    value_lv3 = random_features(generator, batch, 4, ref_height, ref_width)
    value_lv2 = random_features(generator, batch, 3, 2 * ref_height, 2 * ref_width)
    value_lv1 = random_features(generator, batch, 2, 4 * ref_height, 4 * ref_width)

    out = SearchTransfer()(query, key, value_lv1, value_lv2, value_lv3)

    assert isinstance(out, TransferredTextures)
    assert out.soft_attention.shape == (batch, 1, height, width)
    assert out.hard_index.shape == (batch, height * width) and out.hard_index.dtype == torch.int64
    assert out.t_lv3.shape == (batch, 4, height, width)
    assert out.t_lv2.shape == (batch, 3, 2 * height, 2 * width)
    assert out.t_lv1.shape == (batch, 2, 4 * height, 4 * width)
    for b in range(batch):
        values = (value_lv3[b].double(), value_lv2[b].double(), value_lv1[b].double())
        s, index, margin, (t_lv3, t_lv2, t_lv1) = brute_force(query[b].double(), key[b].double(), values)
        assert margin.min() > 1e-4  # no near-ties: the arg-max is well defined
        assert torch.equal(out.hard_index[b], index)
        torch.testing.assert_close(out.soft_attention[b].flatten().double(), s, rtol=0, atol=1e-6)
        torch.testing.assert_close(out.t_lv3[b].double(), t_lv3, rtol=0, atol=1e-6)
        torch.testing.assert_close(out.t_lv2[b].double(), t_lv2, rtol=0, atol=1e-6)
        torch.testing.assert_close(out.t_lv1[b].double(), t_lv1, rtol=0, atol=1e-6)


def test_soft_attention_is_a_cosine_in_unit_range() -> None:
    generator = torch.Generator().manual_seed(0)
    query = random_features(generator, 1, 8, 5, 6)
    key = random_features(generator, 1, 8, 4, 4)
    out = SearchTransfer()(
        query, key, torch.ones(1, 1, 16, 16), torch.ones(1, 1, 8, 8), torch.ones(1, 1, 4, 4)
    )
    assert out.soft_attention.min() >= 0 and out.soft_attention.max() <= 1 + 1e-6
    assert out.hard_index.min() >= 0 and out.hard_index.max() < 16
    # S is the cosine of each LR patch with the Ref patch it picked (features >= 0: never below 0)
    query_patches = [patch_vector(query[0], row, col) for row in range(5) for col in range(6)]
    picked = [patch_vector(key[0], *divmod(int(index), 4)) for index in out.hard_index[0]]
    cosines = torch.stack(
        [F.cosine_similarity(q, k, dim=0) for q, k in zip(query_patches, picked, strict=True)]
    )
    torch.testing.assert_close(out.soft_attention[0, 0].flatten(), cosines, rtol=0, atol=1e-6)


def test_identical_query_and_key_select_themselves() -> None:
    features = random_features(torch.Generator().manual_seed(1), 1, 6, 4, 5)
    out = SearchTransfer()(features, features, torch.rand(1, 2, 16, 20), torch.rand(1, 2, 8, 10), features)
    assert torch.equal(out.hard_index[0], torch.arange(20))
    torch.testing.assert_close(out.soft_attention, torch.ones(1, 1, 4, 5))


def test_fold_divides_by_nine_dimming_the_border() -> None:
    """Official quirk: constant values come back 1 inside, 6/9 on edges, 4/9 at corners (lv3)."""
    features = random_features(torch.Generator().manual_seed(2), 1, 3, 4, 4)
    out = SearchTransfer()(
        features, features, torch.ones(1, 1, 16, 16), torch.ones(1, 1, 8, 8), torch.ones(1, 1, 4, 4)
    )
    t_lv3 = out.t_lv3[0, 0]
    assert t_lv3[1:3, 1:3].eq(1).all()
    torch.testing.assert_close(t_lv3[0, 1:3], torch.full((2,), 6 / 9))
    torch.testing.assert_close(t_lv3[[0, 0, 3, 3], [0, 3, 0, 3]], torch.full((4,), 4 / 9))
    assert out.t_lv1[0, 0, 4:12, 4:12].eq(1).all()  # lv1 ring is 4 px wide
    torch.testing.assert_close(out.t_lv1[0, 0, 0, 0], torch.tensor(4 / 9))
