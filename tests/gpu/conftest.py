"""Each GPU test's outcome written the moment it is known (not at the end of the session).

``benchmarks/gpu_suite.py`` stops pytest when its phase's budget is spent; pytest prints failures and
writes its JUnit XML only at the end, so a stopped session would lose why a test failed. With
``GPU_TEST_REPORTS`` set to a file, every test's outcome, duration, failure text and printed output
are appended to it as one JSON line as soon as the test ends.
"""

from __future__ import annotations

import json
import os

import pytest

REPORTS_VARIABLE = "GPU_TEST_REPORTS"
_TEXT_LIMIT = 4000  # characters of a failure's text kept (its end: the assertion)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = os.environ.get(REPORTS_VARIABLE)
    if not path or not (report.when == "call" or report.outcome != "passed"):
        return  # one line per test: its call, or the setup / teardown that did not pass
    record = {
        "test": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "seconds": round(report.duration, 2),
        "message": report.longreprtext[-_TEXT_LIMIT:] if report.outcome != "passed" else "",
        "stdout": report.capstdout[-_TEXT_LIMIT:],
    }
    with open(path, "a") as reports:
        reports.write(json.dumps(record) + "\n")
