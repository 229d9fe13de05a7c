"""A command's ``main()`` run in this process as a user's command line, with its ``error:`` lines."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest


def error_lines(
    main: Callable[[], None], args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> tuple[int, list[str]]:
    """Runs ``main`` with ``args`` as its command line (errors reported, not raised); returns its exit
    status and its ``error:`` lines, after checking that no traceback was printed."""
    monkeypatch.setattr(sys, "argv", ["python -m ttsr_lightning", *args])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    monkeypatch.setenv("TTSR_SHOW_TRACEBACK", "0")
    with pytest.raises(SystemExit) as exited:
        main()
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and "Error executing job" not in stderr, stderr
    return int(exited.value.code or 0), [line for line in stderr.splitlines() if line.startswith("error:")]
