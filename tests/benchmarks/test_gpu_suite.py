"""benchmarks/gpu_suite.py: its CPU dry run writes every phase, and its bookkeeping holds (no GPU needed).

The dry run is what keeps the prepared GPU check from rotting between GPU loans: every phase's code
path runs on tiny sizes, so a renamed option, argument or module breaks this test, not the GPU call.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO_ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_suite  # noqa: E402
import gpu_suite_report  # noqa: E402
import official_harness  # noqa: E402
import train_step  # noqa: E402

OFFICIAL_MISSING = official_harness.missing_reason()


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("gpu_suite")
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_suite.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=dict(os.environ, WANDB_MODE="disabled"),
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    return out, json.loads((out / "results.json").read_text()), completed.stdout


@pytest.mark.slow  # the dry run they share takes ~55 s on 2 cores
def test_dry_run_writes_few_flat_files(dry_run: tuple[Path, dict[str, Any], str]) -> None:
    out, _, _ = dry_run
    names = {path.name for path in out.iterdir()}
    assert names == {
        "results.json",
        "summary.md",
        "suite.log",
        "pytest.log",
        "pytest_junit.xml",
        "pytest_reports.jsonl",
    }
    assert all(path.is_file() for path in out.iterdir())  # the device call brings back 8 flat files at most


@pytest.mark.slow  # the dry run they share takes ~55 s on 2 cores
def test_every_phase_ran_in_order_and_the_summary_comes_last(
    dry_run: tuple[Path, dict[str, Any], str],
) -> None:
    out, results, stdout = dry_run
    assert tuple(results["phases"]) == gpu_suite.PHASES
    assert results["suite"]["dry_run"] is True and results["suite"]["device"] == "cpu"
    summary = (out / "summary.md").read_text()
    assert stdout.rstrip().endswith(summary.rstrip())
    for heading in (
        "## Environment",
        "## Training step",
        "## Search-transfer",
        "## Inference",
        "## Projection",
    ):
        assert heading in summary


def _finite_positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.slow  # the dry run they share takes ~55 s on 2 cores
def test_measurements_are_finite_and_positive(dry_run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = dry_run
    phases = results["phases"]
    environment = phases["environment"]["cases"][0]
    assert environment["status"] == "ok" and environment["gpu"] is None and environment["not_measured"]
    assert _finite_positive(environment["copy_bytes_per_second"])
    assert all(_finite_positive(rate) for rate in environment["matmul_flops_per_second"].values())

    train = {case["name"]: case for case in phases["train_step"]["cases"]}
    assert list(train) == [name for name, _, _ in gpu_suite.TRAIN_OPTION_SETS]
    for name, case in train.items():
        if name in gpu_suite.DRY_RUN.train_cases:
            assert case["status"] == "ok", case
            assert _finite_positive(case["samples_per_second"]) and case["peak_bytes"] >= 0
        else:
            assert case["status"] == "skipped" and case["reason"] == gpu_suite.DRY_RUN_SKIPPED
    # lean and straightforward at every size (the search: also the tiled path with and without the
    # fused pass, and direct / tiled on the crossover ladder); infer's budgeted path at the largest
    dry = gpu_suite.DRY_RUN
    search_cases = 2 * (len(dry.search_sizes) + len(dry.fused_sizes) + len(dry.crossover_sizes))
    for phase, count in (("search_transfer", search_cases), ("inference", 2 * len(dry.inference_sizes) + 1)):
        cases = phases[phase]["cases"]
        assert len(cases) == count
        for case in cases:
            assert case["status"] == "ok", case
            assert _finite_positive(case["seconds"]) and case["peak_bytes"] >= 0
    budgeted = phases["inference"]["cases"][-1]
    assert budgeted["name"] == f"budgeted {gpu_suite.DRY_RUN.inference_sizes[-1]}"
    assert (
        budgeted["budget_bytes"] == gpu_suite.DRY_RUN.inference_budget_bytes and "LR 8x6" in budgeted["plan"]
    )
    rows = phases["projection"]["rows"]
    assert all(_finite_positive(row["ttsr_hours"]) for row in rows if "missing" not in row)


@pytest.mark.slow  # the dry run they share takes ~55 s on 2 cores
def test_gpu_tests_are_collected_and_skip_without_cuda(dry_run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = dry_run
    tests = results["phases"]["gpu_tests"]
    assert tests["status"] == "passed"
    assert len(tests["tests"]) >= 10
    assert {test["outcome"] for test in tests["tests"]} == {"skipped"}  # this machine has no CUDA


@pytest.mark.slow  # the dry run they share takes ~55 s on 2 cores
def test_official_phase_runs_or_says_why(dry_run: tuple[Path, dict[str, Any], str]) -> None:
    _, results, _ = dry_run
    official = results["phases"]["official"]
    if OFFICIAL_MISSING is not None:  # CI clones: the official code is never committed
        assert official["status"] == "skipped" and official["reason"] == OFFICIAL_MISSING
        return
    for case in official["cases"]:
        assert case["status"] == "ok", case
        assert case["patches"] == official_harness.PATCHES
        assert _finite_positive(case.get("samples_per_second") or case.get("seconds"))


def test_every_train_case_names_an_option_set() -> None:
    for _, option_set, _ in gpu_suite.TRAIN_OPTION_SETS:
        assert option_set in train_step.OPTION_SETS


def test_projection_follows_the_recipe() -> None:
    def step(name: str, seconds: float) -> dict[str, Any]:
        return {"name": name, "status": "ok", "step_seconds": seconds, "samples_per_second": 9 / seconds}

    phases = {
        "train_step": {
            "cases": [
                step("fp32 eager", 0.5),
                step("fp32 eager, warm-up step", 0.1),
                step("bf16 autocast", 0.25),
                {"name": "all of the above", "status": "timed out"},
            ]
        }
    }
    projection = gpu_suite_report.project_recipe(phases)
    assert projection["steps_per_epoch"] == 1319  # 11,871 pairs / batch 9
    rows = {row["setting"]: row for row in projection["rows"]}
    assert rows["ours, fp32 eager"]["ttsr_hours"] == pytest.approx(1319 * (2 * 0.1 + 50 * 0.5) / 3600)
    assert rows["ours, fp32 eager"]["ttsr_rec_hours"] == pytest.approx(1319 * 200 * 0.1 / 3600)
    fastest = rows["ours, fastest measured (bf16 autocast; warm-up step: fp32 eager)"]
    assert fastest["full_step_seconds"] == 0.25 and fastest["warmup_step_seconds"] == 0.1
    assert "missing" in rows["ours, all speed options"] and "missing" in rows["official code"]


def test_a_case_over_its_timeout_is_recorded_and_the_next_runs(tmp_path: Path) -> None:
    args = argparse.Namespace(
        dry_run=True,
        out=tmp_path,
        budget_s=300.0,
        budget_scale=1.0,
        isolate=False,
        official_dir=official_harness.OFFICIAL_DIR,
        phases=list(gpu_suite.PHASES),
    )
    suite = gpu_suite.Suite(args)
    slow = gpu_suite.phase_cases("train_step", gpu_suite.DRY_RUN, args.official_dir)[0]
    fast = gpu_suite.phase_cases("search_transfer", gpu_suite.DRY_RUN, args.official_dir)[0]
    slow["timeout_s"] = 0.5  # importing Lightning alone takes longer
    results = suite.run_cases([slow, fast], deadline=suite.deadline)
    suite.finish()
    assert results[slow["name"]]["status"] == "timed out"
    assert results[fast["name"]]["status"] == "ok"
    assert "worker:" in (tmp_path / "suite.log").read_text()
