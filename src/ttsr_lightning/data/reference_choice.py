"""Which photo is tested, which photo is whose reference, and where the crops lie (the builder's choices,
on match counts; no file is read here).

- :func:`split_units`: the albums (or photos) held out for testing, ``test_fraction`` of them drawn with
  the seed; every photo of a unit is on one side, so no photo is in both training and testing.
- :func:`candidate_pools`: a photo's candidates: the other photos of its album on its side, else (for a
  photo with no album, or when too few of them match) up to ``max_candidates`` other photos of its
  side drawn with the seed. Never the photo itself.
- :func:`choose_levels`: a test image's references L1 (most matches) .. L5: its candidates with at
  least ``min_matches`` matches, one per distinct match count, ranked, and five taken at evenly spaced
  ranks from the best to the weakest, so the match count falls strictly from L1 to L5.
- :func:`choose_training_crops`: a training photo's HR crops (patch x patch, on a grid of half-patch
  steps) where a candidate matches most, and each one's reference: a patch x patch crop of that
  candidate centred on the median of the matched keypoints; kept only when at least ``min_matches``
  matches have both ends inside the two crops.

Boxes are (left, top, right, bottom) in the pixels of the photo as the builder decodes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ttsr_lightning.data.seeding import build_generator

LEVELS = 5
Box = tuple[int, int, int, int]


class Candidate(NamedTuple):
    """A possible reference: its photo, where it came from (``album`` or ``collection``), its matches."""

    photo: str
    origin: str
    matches: int


class MatchedCandidate(NamedTuple):
    """A candidate with what crop placement needs: ``pairs`` (M, 2) int (query keypoint, candidate
    keypoint), ``points`` (N, 2) its keypoints (x, y), ``size`` its (width, height)."""

    candidate: Candidate
    pairs: np.ndarray
    points: np.ndarray
    size: tuple[int, int]


class TrainingCrop(NamedTuple):
    """An HR crop and its reference crop; ``matches``: matches with both ends inside the two crops."""

    hr_box: Box
    ref: Candidate
    ref_box: Box
    matches: int


def split_units(units: Sequence[str], test_fraction: float, seed: int) -> set[str]:
    """The units (album names, or photos) held out for testing: ``round(test_fraction * n)``, at least
    one and at most all but one, drawn with ``seed`` from the sorted units."""
    ordered = sorted(units)
    count = min(max(round(test_fraction * len(ordered)), 1), len(ordered) - 1)
    drawn = build_generator(seed, "split").permutation(len(ordered))[:count]
    return {ordered[int(index)] for index in drawn}


def candidate_pools(
    photo: str, album: Sequence[str], side: Sequence[str], max_candidates: int, seed: int
) -> tuple[list[str], list[str]]:
    """(album candidates, collection candidates) of ``photo``: the other photos of its album, then the
    side's photos outside the album, each pool at most ``max_candidates`` (drawn with ``seed``), sorted."""
    in_album = [other for other in sorted(album) if other != photo]
    outside = set(album) | {photo}
    collection = [other for other in sorted(side) if other not in outside]
    return _at_most(in_album, max_candidates, seed, photo, "album"), _at_most(
        collection, max_candidates, seed, photo, "collection"
    )


def _at_most(photos: list[str], count: int, seed: int, photo: str, pool: str) -> list[str]:
    if len(photos) <= count:
        return photos
    drawn = build_generator(seed, photo, pool).choice(len(photos), size=count, replace=False)
    return [photos[int(index)] for index in sorted(drawn)]


def ranked_distinct(candidates: Sequence[Candidate], min_matches: int) -> list[Candidate]:
    """Candidates with at least ``min_matches`` matches, one per match count (the first given of a
    tie), most matches first."""
    first: dict[int, Candidate] = {}
    for candidate in candidates:
        if candidate.matches >= min_matches:
            first.setdefault(candidate.matches, candidate)
    return [first[count] for count in sorted(first, reverse=True)]


def choose_levels(candidates: Sequence[Candidate], min_matches: int) -> list[Candidate] | None:
    """References L1 .. L5 (strictly fewer matches at each level), or None when fewer than five
    candidates have distinct match counts of at least ``min_matches``."""
    ranked = ranked_distinct(candidates, min_matches)
    if len(ranked) < LEVELS:
        return None
    last = len(ranked) - 1
    # evenly spaced ranks, rounded half up: 0, ..., last
    return [ranked[(2 * level * last + LEVELS - 1) // (2 * (LEVELS - 1))] for level in range(LEVELS)]


def crop_grid(width: int, height: int, patch: int) -> np.ndarray:
    """(K, 4) int boxes patch x patch at steps of patch // 2, the last flush with the right and bottom
    edges, in reading order."""
    step = max(patch // 2, 1)
    lefts = sorted({*range(0, width - patch + 1, step), width - patch})
    tops = sorted({*range(0, height - patch + 1, step), height - patch})
    return np.array([(left, top, left + patch, top + patch) for top in tops for left in lefts], np.int64)


def inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(K, N) bool: point n lies in box k."""
    x, y = points[None, :, 0], points[None, :, 1]
    left, top, right, bottom = (boxes[:, i, None] for i in range(4))
    return (x >= left) & (x < right) & (y >= top) & (y < bottom)


def box_around(centre: np.ndarray, patch: int, size: tuple[int, int]) -> Box:
    """The patch x patch box centred on ``centre`` (x, y), moved inside a photo of ``size``."""
    left = int(min(max(round(float(centre[0]) - patch / 2), 0), size[0] - patch))
    top = int(min(max(round(float(centre[1]) - patch / 2), 0), size[1] - patch))
    return (left, top, left + patch, top + patch)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def choose_training_crops(
    points: np.ndarray,
    size: tuple[int, int],
    candidates: Sequence[MatchedCandidate],
    patch: int,
    count: int,
    min_matches: int,
) -> list[TrainingCrop]:
    """Up to ``count`` non-overlapping HR crops of a photo (keypoints ``points``, ``size`` (width,
    height)), most matched first, each with its best candidate's reference crop."""
    boxes = crop_grid(*size, patch)
    best = np.zeros(len(boxes), np.int64)
    chosen_candidate = np.full(len(boxes), -1)
    for index, matched in enumerate(candidates):  # a tie keeps the earlier candidate (the album's first)
        in_box = inside(points[matched.pairs[:, 0]], boxes).sum(axis=1)
        better = in_box > best
        best[better], chosen_candidate[better] = in_box[better], index
    crops: list[TrainingCrop] = []
    for box_index in sorted(range(len(boxes)), key=lambda k: (-int(best[k]), k)):
        if len(crops) == count or best[box_index] < min_matches:
            break
        hr_box: Box = tuple(int(v) for v in boxes[box_index])  # type: ignore[assignment]
        if any(_overlap(hr_box, crop.hr_box) for crop in crops):
            continue
        matched = candidates[int(chosen_candidate[box_index])]
        in_hr = inside(points[matched.pairs[:, 0]], boxes[box_index : box_index + 1])[0]
        ref_points = matched.points[matched.pairs[in_hr, 1]]
        ref_box = box_around(np.median(ref_points, axis=0), patch, matched.size)
        both = int((in_hr & inside(matched.points[matched.pairs[:, 1]], np.array([ref_box]))[0]).sum())
        if both >= min_matches:
            crops.append(TrainingCrop(hr_box, matched.candidate, ref_box, both))
    return crops
