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
        pytest.skip(f"official-code fixtures not found at {SHARED_FIXTURES} (only CI and developers have ../shared)")
    return SHARED_FIXTURES
