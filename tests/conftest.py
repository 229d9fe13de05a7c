"""Shared pytest fixtures: the official code's outputs (tests/fixtures/official), small real photographs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_TORCH_HOME = pytest.StashKey[str]()
OFFICIAL_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "official"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """Folder of the official code's outputs (parity fixtures; what each holds: its README.md)."""
    return OFFICIAL_FIXTURES


@pytest.fixture(scope="session")
def sample_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``paths.data_dir`` holding the embedded sample dataset (built once per test session)."""
    from ttsr_lightning.data.sample import build_sample_dataset

    data_dir = tmp_path_factory.mktemp("data")
    build_sample_dataset(data_dir / "sample")
    return data_dir


def pytest_configure(config: pytest.Config) -> None:
    """Tests see none of the machine's ImageNet weight files (what CI sees): an empty torch.hub cache
    and no TTSR_*_WEIGHTS, so "auto" weights (VGG19, LPIPS's AlexNet) are absent unless a test puts them
    there. Set here, so subprocesses inherit it."""
    config.stash[_TORCH_HOME] = os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="ttsr-tests-torch-home-")
    for name in ("TTSR_VGG19_WEIGHTS", "TTSR_ALEXNET_WEIGHTS"):
        os.environ.pop(name, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(config.stash[_TORCH_HOME], ignore_errors=True)
