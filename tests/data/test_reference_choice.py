"""The builder's choices on match counts: the split, the candidate pools, the levels, the crops."""

from __future__ import annotations

import numpy as np

from ttsr_lightning.data.reference_choice import (
    Candidate,
    MatchedCandidate,
    box_around,
    candidate_pools,
    choose_levels,
    choose_training_crops,
    crop_grid,
    split_units,
)


def candidates(*counts: int) -> list[Candidate]:
    return [Candidate(f"p{index}.jpg", "album", count) for index, count in enumerate(counts)]


def test_levels_take_evenly_spaced_ranks_of_the_distinct_counts() -> None:
    # distinct counts of at least 4: 50, 40, 30, 20, 10, 5 (ranks 0..5); the tie at 40 keeps p1
    levels = choose_levels(candidates(30, 40, 50, 40, 3, 20, 10, 5), min_matches=4)
    assert levels is not None
    assert [c.matches for c in levels] == [50, 40, 20, 10, 5]
    assert [c.photo for c in levels] == ["p2.jpg", "p1.jpg", "p5.jpg", "p6.jpg", "p7.jpg"]
    exactly_five = choose_levels(candidates(9, 7, 8, 6, 5), min_matches=5)
    assert exactly_five is not None and [c.matches for c in exactly_five] == [9, 8, 7, 6, 5]
    assert choose_levels(candidates(9, 9, 8, 7, 6, 4), min_matches=5) is None  # 4 distinct counts >= 5
    assert choose_levels(candidates(90, 80, 70, 60), min_matches=1) is None


def test_the_split_holds_out_a_fraction_of_the_units_drawn_with_the_seed() -> None:
    units = [f"album {index}" for index in range(10)]
    held_out = split_units(units, 0.3, seed=0)
    assert len(held_out) == 3 and held_out <= set(units)
    assert split_units(list(reversed(units)), 0.3, seed=0) == held_out  # the order given does not matter
    assert len({frozenset(split_units(units, 0.3, seed)) for seed in range(5)}) > 1
    assert len(split_units(units[:2], 0.01, seed=0)) == 1  # at least one unit tested
    assert len(split_units(units[:2], 0.99, seed=0)) == 1  # at least one unit trained on


def test_candidate_pools_never_hold_the_photo_and_are_capped_with_the_seed() -> None:
    album = [f"a/{index}.jpg" for index in range(6)]
    side = [*album, *(f"b/{index}.jpg" for index in range(30))]
    in_album, collection = candidate_pools("a/2.jpg", album, side, max_candidates=10, seed=0)
    assert in_album == ["a/0.jpg", "a/1.jpg", "a/3.jpg", "a/4.jpg", "a/5.jpg"]
    assert len(collection) == 10 and collection == sorted(collection)
    assert all(path.startswith("b/") for path in collection)
    assert candidate_pools("a/2.jpg", album, side, 10, seed=0)[1] == collection
    assert candidate_pools("a/2.jpg", album, side, 10, seed=1)[1] != collection
    assert candidate_pools("x.jpg", [], ["x.jpg", "y.jpg"], 10, seed=0) == ([], ["y.jpg"])


def test_the_crop_grid_steps_by_half_a_patch_and_ends_flush() -> None:
    grid = crop_grid(100, 70, 32)
    lefts, tops = sorted({int(b[0]) for b in grid}), sorted({int(b[1]) for b in grid})
    assert lefts == [0, 16, 32, 48, 64, 68] and tops == [0, 16, 32, 38]
    assert len(grid) == 24 and (grid[:, 2] - grid[:, 0] == 32).all() and (grid[:, 3] - grid[:, 1] == 32).all()
    assert box_around(np.array([5.0, 90.0]), 32, (100, 70)) == (0, 38, 32, 70)  # moved inside


def test_training_crops_lie_where_a_candidate_matches_and_the_reference_follows_the_matches() -> None:
    rng = np.random.default_rng(0)
    # the query's keypoints: 30 in the box (64, 32)..(96, 64), 5 scattered elsewhere
    cluster = rng.uniform([66, 34], [94, 62], size=(30, 2))
    query = np.concatenate([cluster, [[5, 5], [150, 100], [10, 110], [120, 10], [150, 5]]]).astype(np.float32)
    # candidate A shows the cluster 40 px right and 20 px down; candidate B matches 12 points of it
    points_a = np.concatenate([cluster + [40, 20], rng.uniform(0, 160, size=(10, 2))]).astype(np.float32)
    pairs_a = np.stack([np.arange(30), np.arange(30)], axis=1)
    pairs_b = np.stack([np.arange(12), np.arange(12)], axis=1)
    matched = [
        MatchedCandidate(
            Candidate("b.jpg", "album", 12), pairs_b, cluster[:12].astype(np.float32), (160, 120)
        ),
        MatchedCandidate(Candidate("a.jpg", "album", 30), pairs_a, points_a, (160, 120)),
    ]
    crops = choose_training_crops(query, (160, 120), matched, patch=32, count=2, min_matches=10)
    assert len(crops) == 1  # every other box holds fewer than 10 matched points, or overlaps it
    [crop] = crops
    assert crop.hr_box == (64, 32, 96, 64) and crop.ref == Candidate("a.jpg", "album", 30)
    shown = cluster + [40, 20]
    assert crop.ref_box == box_around(np.median(shown, axis=0), 32, (160, 120)) == (107, 49, 139, 81)
    in_reference = ((shown >= crop.ref_box[:2]) & (shown < crop.ref_box[2:])).all(axis=1)
    assert crop.matches == int(in_reference.sum()) == 28  # matches with both ends inside the two crops
    assert choose_training_crops(query, (160, 120), matched, 32, 2, min_matches=31) == []
