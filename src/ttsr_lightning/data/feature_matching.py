"""Local features and their matches: how CUFED's references were ranked (SRNTT, Zhang et al., CVPR 2019,
section 4: references from the same album, ranked by their matched local features).

- :func:`photo_features`: OpenCV's SIFT on a grey copy of the photo shrunk to ``match_size`` pixels on
  its longer side (never enlarged), keeping the ``max_features`` strongest keypoints; positions are
  given in the photo's own pixels, so crops can be placed from them.
- :func:`match_features`: the keypoint pairs that are each other's nearest neighbour (L2 distance
  between descriptors, exhaustive, both ways) and whose nearest neighbour is closer than ``ratio`` times
  the second nearest (Lowe's ratio test, IJCV 2004; 0.75 by default). Their number is the match count
  that ranks references. The ratio test alone lets many keypoints of one photo (the stars of a sky, the
  stones of a wall) match one keypoint of an unrelated photo: on scikit-image's photographs, pairs of
  unrelated photos then reach 82 matches; with the mutual check at most 14.

OpenCV runs single-threaded here (:func:`single_threaded`, called by the builder in every worker), so
the keypoints are the same whatever the number of worker processes.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

DETECTOR = "SIFT (OpenCV), mutual nearest neighbours (exhaustive, L2), Lowe's ratio test"


class Features(NamedTuple):
    """A photo's keypoints: ``points`` (N, 2) float32 (x, y) in the photo's pixels, ``descriptors``
    (N, 128) float32."""

    points: np.ndarray
    descriptors: np.ndarray


def single_threaded() -> None:
    """One OpenCV thread in this process (the same keypoints with any number of worker processes)."""
    cv2.setNumThreads(1)


def photo_features(image: Image.Image, match_size: int, max_features: int) -> Features:
    """SIFT keypoints of ``image`` (RGB) found on its grey copy of at most ``match_size`` pixels on the
    longer side; the ``max_features`` strongest (0: all)."""
    grey = image.convert("L")
    if max(grey.size) > match_size:
        ratio = match_size / max(grey.size)
        grey = grey.resize(
            (max(1, round(grey.width * ratio)), max(1, round(grey.height * ratio))), Image.Resampling.LANCZOS
        )
    keypoints, descriptors = cv2.SIFT.create(nfeatures=max_features).detectAndCompute(np.asarray(grey), None)
    if not keypoints:
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    scale = np.array([image.width / grey.width, image.height / grey.height], np.float32)
    points = np.array([keypoint.pt for keypoint in keypoints], np.float32) * scale
    return Features(points, np.asarray(descriptors, np.float32))


def match_features(query: Features, candidate: Features, ratio: float) -> np.ndarray:
    """(M, 2) int32 pairs (query keypoint, candidate keypoint): mutual nearest neighbours that pass the
    ratio test, in query order."""
    if len(query.descriptors) == 0 or len(candidate.descriptors) < 2:
        return np.zeros((0, 2), np.int32)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    nearest = matcher.knnMatch(query.descriptors, candidate.descriptors, k=2)
    nearest_query = {m.queryIdx: m.trainIdx for m in matcher.match(candidate.descriptors, query.descriptors)}
    pairs = [
        (best.queryIdx, best.trainIdx)
        for best, second in nearest
        if best.distance < ratio * second.distance and nearest_query[best.trainIdx] == best.queryIdx
    ]
    return np.array(pairs, np.int32).reshape(-1, 2)
