"""Shared pytest fixtures: the official-code fixtures in ../shared/fixtures and small real photographs."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """Folder of the official code's outputs (parity fixtures); skips where a clone has no ../shared."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(
            f"official-code fixtures not found at {SHARED_FIXTURES} (only CI and developers have ../shared)"
        )
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def sample_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``paths.data_dir`` holding the embedded sample dataset (built once per test session)."""
    from ttsr_lightning.data.sample import build_sample_dataset

    data_dir = tmp_path_factory.mktemp("data")
    build_sample_dataset(data_dir / "sample")
    return data_dir
