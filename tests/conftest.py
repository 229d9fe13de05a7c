"""Shared pytest fixtures: the official code's outputs (tests/fixtures/official), small real photographs."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
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
