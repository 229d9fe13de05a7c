"""The repository speaks for itself: no comment or document cites a file it does not contain (notes kept
beside it while it was built) or the number of an issue in a tracker its readers cannot see. Links to
public issue threads (researchmm/TTSR's, say) are full addresses and stay."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTSIDE_FILES = re.compile(r"\.\./shared|\b(OFFICIAL_CODE|TTSR|METHOD|H200|STACK_NOTES|STYLE)\.md\b")
ISSUE_NUMBER = re.compile(r"\b[Ii]ssues?\s+#?\d+|\B#\d+\b(?=[),;:. ]|$)")


def _tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    files = []
    for name in listed:
        path = REPO_ROOT / name
        if not path.is_file() or path.suffix in {".png", ".jpg", ".pt", ".npz"}:
            continue
        if b"\0" not in path.read_bytes()[:4096]:
            files.append(path)
    return files


def test_the_patterns_catch_what_they_are_for() -> None:
    assert all(ISSUE_NUMBER.search(text) for text in ("see issue 12", "(issues 3, 4)", "as in #18)"))
    assert not any(ISSUE_NUMBER.search(text) for text in ("TTSR#3", "tissue 4", "issue of 2020"))
    assert OUTSIDE_FILES.search("see ../shared/x") and OUTSIDE_FILES.search("OFFICIAL_CODE.md 2.4")
    assert not OUTSIDE_FILES.search("README.md")


def test_no_file_outside_the_repository_and_no_issue_number_is_cited() -> None:
    offending = []
    files = _tracked_text_files()
    assert len(files) > 100  # the whole repository was read
    for path in files:
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            issue = ISSUE_NUMBER.search(line)
            if OUTSIDE_FILES.search(line) or (issue and "github.com/" not in line):
                offending.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()[:100]}")
    assert not offending, "cites what a reader of the repository cannot see:\n" + "\n".join(offending)
