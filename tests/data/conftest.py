"""Small dataset trees with the real folder layouts, cut from scikit-image's bundled photographs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from helpers.dataset_trees import make_cufed5, make_cufed_train, make_image_folder, make_sun80, photo_crop
from ttsr_lightning.data import build_sample_dataset


@pytest.fixture(scope="session")
def photo() -> Callable[[str, int, int, int, int], Image.Image]:
    """``photo(name, top, left, height, width)``: an RGB crop of a scikit-image photograph."""
    return photo_crop


@pytest.fixture
def cufed_train(tmp_path: Path) -> Path:
    return make_cufed_train(tmp_path / "CUFED" / "train")


@pytest.fixture(scope="session")
def shared_cufed_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``cufed_train``, built once per session for read-only use (e.g. by many parametrized tests)."""
    return make_cufed_train(tmp_path_factory.mktemp("CUFED") / "train")


@pytest.fixture
def cufed5(tmp_path: Path) -> Path:
    return make_cufed5(tmp_path / "CUFED" / "test" / "CUFED5")


@pytest.fixture
def sun80(tmp_path: Path) -> Path:
    return make_sun80(tmp_path / "Sun80")


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[[str, int], Path]:
    """Build a flat folder of HR images: ``image_folder("Urban100", 3)``."""

    def build(name: str, count: int) -> Path:
        return make_image_folder(tmp_path / name, count)

    return build


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded sample dataset, built once per test session (offline)."""
    root = tmp_path_factory.mktemp("sample")
    build_sample_dataset(root)
    return root
