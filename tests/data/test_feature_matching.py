"""SIFT features on grey copies and their matches (ratio test, mutual nearest neighbours), on real
photographs: a shifted view of a photo matches at its shift, unrelated photos barely match."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image

from ttsr_lightning.data.feature_matching import match_features, photo_features, single_threaded
from ttsr_lightning.data.photo_dataset import BuildSettings

MIN_MATCHES = BuildSettings().min_matches


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    single_threaded()


def astronaut(top: int, left: int, side: int = 300) -> Image.Image:
    return Image.fromarray(skimage.data.astronaut()[top : top + side, left : left + side])


def test_keypoints_lie_on_the_photo_in_its_own_pixels() -> None:
    photo = Image.fromarray(skimage.data.astronaut())  # 512 x 512, matched on a 256 x 256 grey copy
    features = photo_features(photo, match_size=256, max_features=500)
    assert 400 < len(features.points) <= 500  # the strongest 500 (OpenCV drops repeated keypoints)
    assert features.points.shape[1] == 2 and features.descriptors.shape == (len(features.points), 128)
    assert features.points.min() >= 0 and features.points.max() < 512
    assert features.points.max() > 400  # in the photo's pixels, not the grey copy's


def test_a_shifted_view_matches_at_its_shift_and_unrelated_photos_barely() -> None:
    view, shifted = photo_features(astronaut(0, 0), 320, 2000), photo_features(astronaut(40, 60), 320, 2000)
    pairs = match_features(view, shifted, ratio=0.75)
    assert len(pairs) > 250
    offsets = view.points[pairs[:, 0]] - shifted.points[pairs[:, 1]]
    np.testing.assert_allclose(np.median(offsets, axis=0), [60, 40], atol=0.5)
    assert np.mean(np.abs(offsets - [60, 40]).max(axis=1) < 1) > 0.98
    assert len(np.unique(pairs[:, 1])) == len(pairs)  # mutual: each keypoint matched at most once
    assert len(match_features(view, shifted, ratio=0.5)) < len(pairs)  # a stricter ratio keeps fewer
    for name in ("coffee", "chelsea", "rocket", "camera"):
        other = Image.fromarray(getattr(skimage.data, name)()).convert("RGB").crop((0, 0, 300, 300))
        assert len(match_features(view, photo_features(other, 320, 2000), 0.75)) < MIN_MATCHES, name
