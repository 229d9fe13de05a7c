"""Shared pytest fixtures: the official code's outputs (tests/fixtures/official), small real photographs, a
small photo collection and the dataset built from it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ttsr_lightning.data.photo_dataset import BuildResult

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


@pytest.fixture(scope="session")
def photo_collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small collection of real photographs in albums, with bad files (helpers/photo_collection.py)."""
    from helpers.photo_collection import write_test_collection

    return write_test_collection(tmp_path_factory.mktemp("collection") / "photos")


@pytest.fixture(scope="session")
def built_photos(photo_collection: Path, tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """That collection built once by ``python -m ttsr_lightning.data.build``'s function, uninterrupted, in
    this process (read-only for the tests)."""
    from helpers.photo_collection import SETTINGS
    from ttsr_lightning.data.photo_dataset import build_photo_dataset

    return build_photo_dataset(photo_collection, tmp_path_factory.mktemp("built") / "dataset", SETTINGS)


def pytest_configure(config: pytest.Config) -> None:
    """Tests see none of the machine's ImageNet weight files (what CI sees): an empty torch.hub cache
    and no TTSR_*_WEIGHTS, so "auto" weights (VGG19, LPIPS's AlexNet) are absent unless a test puts them
    there. Set here, so subprocesses inherit it."""
    config.stash[_TORCH_HOME] = os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="ttsr-tests-torch-home-")
    for name in ("TTSR_VGG19_WEIGHTS", "TTSR_ALEXNET_WEIGHTS"):
        os.environ.pop(name, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(config.stash[_TORCH_HOME], ignore_errors=True)


# The fast tier's promise: no unmarked test takes longer than this on a 2-core CPU (pyproject's `slow`).
SLOW_SECONDS = 30.0
_PHASES = pytest.StashKey[float]()
_OVER_TIME = pytest.StashKey[list]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """Add up each test's setup, call and teardown; note the unmarked ones over ``SLOW_SECONDS``."""
    yield
    total = item.stash[_PHASES] = item.stash.get(_PHASES, 0.0) + call.duration
    marked = item.get_closest_marker("slow") or item.get_closest_marker("gpu")
    if call.when == "teardown" and total > SLOW_SECONDS and not marked:
        item.config.stash.setdefault(_OVER_TIME, []).append((item.nodeid, total))
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Name the unmarked tests that took longer than the fast tier allows (to be marked ``slow``)."""
    over = sorted(config.stash.get(_OVER_TIME, []), key=lambda entry: -entry[1])
    if over:
        terminalreporter.section(f"not marked slow, yet over {SLOW_SECONDS:.0f} s")
        for nodeid, seconds in over:
            terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}")
