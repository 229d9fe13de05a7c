"""Every GPU measurement of the suite in one run that stops by itself within a time budget.

    python benchmarks/gpu_suite.py --out DIR              # on a CUDA machine: 9.5 minutes at most (cut short)
    python benchmarks/gpu_suite.py --dry-run --out DIR    # the same phases, tiny sizes, CPU, 1-2 minutes
    python benchmarks/gpu_suite.py --phases train_step inference --budget-s 200 --out DIR
    make gpu-suite / make gpu-suite-dry-run

On your own GPU: ``make install`` (a CUDA build of torch 2.13.0 from PyTorch's index, with Triton),
``make gpu-suite-dry-run`` on the CPU first, then ``make gpu-suite``. To time the official code beside
ours, copy researchmm/TTSR into ``third_party/TTSR`` (see ``official_harness.py``) and add
``official`` to ``--phases``; ``benchmarks/gpu_suite.sh`` wraps the same run for a machine without
internet (it installs the wheels that ``benchmarks/prepare_gpu_wheels.sh`` put in ``.whl/``).
Measured on one H200 on 2026-11-30: the benchmark phases take ~4 minutes plus what compiling takes,
the GPU tests ~5 minutes, ~100 s of it for each compiling test.

The suite stops by itself after ``--budget-s`` (570 s without ``--phases``: then the last phases are
cut short) and writes, under ``--out``: ``results.json`` (every number), ``summary.md`` (the tables,
also printed last), ``pytest_junit.xml``, ``pytest.log`` and ``pytest_reports.jsonl`` (the GPU tests;
the last written test by test, so a failure's text survives a stopped run) and ``suite.log`` (every
worker's output). A rerun of some tests:
``bash benchmarks/gpu_suite.sh --phases gpu_tests --tests "resumes" --budget-s 200``.

Phases, in order, each with its own budget in seconds (a phase's deadline also keeps 15 s for every
phase after it; cases left when a budget is spent are recorded as skipped, with the reason):

1. ``environment`` (15): versions, the GPU, free memory, and the two ceilings a step's time is judged
   against, measured on random data: device-to-device copy bandwidth (bytes read + written) and
   8192^3 matmul rates in
   bf16, fp32 and TF32.
2. ``gpu_tests`` (300): ``pytest -m gpu tests/gpu`` (JUnit XML + log): a tiny training run with each
   speed option and all together, a resume restoring the CUDA RNG state, the lean search's tiles sized
   from free memory and its results against the CPU's, the fused Triton pass against its torch
   oracle, no synchronising call in a steady training step (``torch.cuda.set_sync_debug_mode``), and
   the compiled step (default and CUDA graphs) against the eager one.
3. ``train_step`` (240): the paper's step (batch 9, LR 40x40, HR/Ref 160, n_feats 64, 16+16+8+4, all
   losses, random VGG, synthetic data) with ``train_step.measure_step``: fp32 eager, each speed
   option alone, all together, compiled with CUDA graphs in fp32 and with every option (the
   compiling cases last), and the reconstruction-only warm-up step; samples/s (median of 20 steps
   after 5 warm-up steps, synchronised), peak ``max_memory_allocated``, the warm-up's time
   (compilation) and the graphs compiled while timed (none expected).
4. ``search_transfer`` (90): lean (as the model runs it) and straightforward search-transfer at LR
   40x40, 125x83, 256x192, 480x270 and 960x540 with a same-size reference (the straightforward one
   where its estimate fits); the tiled path with and without the fused Triton pass at 256x192 and
   480x270; and the direct / tiled crossover ladder (LR 48x48 to 96x96, and batch 9) that places
   ``lean_search_transfer.DIRECT_SEARCH_MAX_ELEMENTS["cuda"]``.
5. ``inference`` (80): the paper-size generator under no_grad at HR 500x332 (CUFED5), 1920x1080 and
   3840x2160; lean everywhere (an out-of-memory error is a result), straightforward where it fits.
6. ``official`` (40): the official researchmm/TTSR code on the same card (``official_harness.py``):
   its training step (train.sh's losses; an init epoch's reconstruction-only step) and its inference.
7. ``projection``: the TTSR recipe (2 warm-up + 50 epochs of 1,319 steps) and TTSR-rec (200 epochs)
   projected from the measured steps, against ~10 h for the official code on a V100.

This file is the orchestrator (phases, budgets, worker processes, pytest); ``gpu_suite_cases.py``
is what a worker runs, ``gpu_suite_report.py`` the tables and the projection.
Cases run in worker processes (one per phase; a case that crashes its worker or outlives its own
timeout is recorded and the worker restarted for the remaining cases; ``--isolate``: one process per
case). Each case sets the process-wide switches it depends on (TF32, cuDNN autotuning) and frees
what it compiled and cached, so cases sharing a worker do not inherit each other's state.
``--dry-run`` runs on the CPU with tiny sizes (n_feats 8, one block per stage, batch 2, one step,
one size per phase, fp32 eager and all options together for the training step) and
``TORCH_COMPILE_DISABLE=1`` (inductor's CPU build takes minutes): it checks the code paths, its
numbers mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import train_step
from gpu_suite_cases import run_worker
from gpu_suite_report import outcome_counts, project_recipe, summary_markdown

BENCHMARKS = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS.parent
PHASES = ("environment", "gpu_tests", "train_step", "search_transfer", "inference", "official", "projection")
PHASE_BUDGETS_S = {
    "environment": 15,
    "gpu_tests": 300,
    "train_step": 240,
    "search_transfer": 90,
    "inference": 80,
    "official": 40,
    "projection": 1,
}
RESERVE_S = 15  # kept for every phase still to come when a phase's deadline is set
GPU_BUDGET_S = 570
DRY_RUN_BUDGET_S = 600
DRY_RUN_BUDGET_SCALE = 4  # a loaded 2-core CPU: the dry run may only fail on a real error

TRAIN_OPTION_SETS = [
    # (case name, train_step.OPTION_SETS key, reconstruction-only step); compiling ones last
    ("fp32 eager", "fp32 eager", False),
    ("fp32 eager, warm-up step", "fp32 eager", True),
    ("fp32 strict (no TF32 convolutions)", "fp32 strict (no TF32 convolutions)", False),
    ("TF32 matmul", "TF32 matmul", False),
    ("channels_last", "channels_last", False),
    ("batched LTE pass", "batched LTE pass", False),
    ("bf16 autocast", "bf16 autocast", False),
    ("fused Adam", "fused Adam", False),
    ("cudnn benchmark", "cudnn benchmark", False),
    ("all eager options", "all eager options", False),
    ("all eager options, warm-up step", "all eager options", True),
    # the step compiled with CUDA graphs: the paper's fp32 numerics, then with every option (bf16)
    ("fp32, torch.compile, CUDA graphs", "fp32, torch.compile, CUDA graphs", False),
    ("all of the above, CUDA graphs", "all of the above, CUDA graphs", False),
    ("all of the above, CUDA graphs, warm-up step", "all of the above, CUDA graphs", True),
    ("torch.compile, CUDA graphs", "torch.compile, CUDA graphs", False),
    ("all of the above", "all of the above", False),
    ("torch.compile", "torch.compile", False),
]
COMPILING = {
    name for name in train_step.OPTION_SETS if "compile" in name or name.startswith("all of the above")
}


@dataclass(frozen=True)
class Sizes:
    """What the phases run at: the paper's sizes on a GPU, tiny ones in the dry run."""

    batch: int
    lr_size: int
    n_feats: int
    num_res_blocks: tuple[int, ...]
    steps: int
    warmup: int
    search_sizes: tuple[str, ...]  # LR W x H, same-size reference
    crossover_sizes: tuple[str, ...]  # LR W x H (bB: batch B): the direct / tiled search switch
    fused_sizes: tuple[str, ...]  # the tiled search with the Triton pass against its torch passes
    inference_sizes: tuple[str, ...]  # HR W x H, same-size reference
    inference_budget_bytes: int  # max_memory of the budgeted (infer) case at the largest size
    matmul_size: int
    copy_bytes: int
    case_timeout_s: float
    compile_timeout_s: float
    train_cases: tuple[str, ...] | None = None  # None: every case of TRAIN_OPTION_SETS


PAPER = Sizes(
    batch=9,
    lr_size=40,
    n_feats=64,
    num_res_blocks=(16, 16, 8, 4),
    steps=20,
    warmup=5,
    search_sizes=("40x40", "125x83", "256x192", "480x270", "960x540"),
    crossover_sizes=("48x48", "56x56", "64x64", "72x72", "80x80", "96x96", "40x40b9", "64x64b9"),
    fused_sizes=("256x192", "480x270"),
    inference_sizes=("500x332", "1920x1080", "3840x2160"),
    inference_budget_bytes=8 * 2**30,
    matmul_size=8192,
    copy_bytes=2 * 2**30,
    case_timeout_s=75,
    compile_timeout_s=240,
)
DRY_RUN = Sizes(
    batch=2,
    lr_size=8,
    n_feats=8,
    num_res_blocks=(1, 1, 1, 1),
    steps=1,
    warmup=0,
    search_sizes=("16x12",),
    crossover_sizes=("8x8b2",),
    fused_sizes=("16x12",),
    inference_sizes=("32x24",),
    inference_budget_bytes=3 * 2**20,
    matmul_size=256,
    copy_bytes=16 * 2**20,
    case_timeout_s=120,
    compile_timeout_s=120,
    # each speed option's code path runs in "all of the above"; a CPU step costs seconds (VGG, critic)
    train_cases=("fp32 eager", "fp32 eager, warm-up step", "all of the above"),
)
DRY_RUN_SKIPPED = "dry run: its code path runs in 'all of the above' (measured alone on a GPU)"


# ---------------------------------------------------------------------------------------- cases
def phase_cases(phase: str, sizes: Sizes, official_dir: Path) -> list[dict[str, Any]]:
    """The cases of a worker phase: name, kind, parameters and timeout."""
    common = {"n_feats": sizes.n_feats, "num_res_blocks": list(sizes.num_res_blocks)}
    if phase == "environment":
        return [
            {
                "name": "environment",
                "kind": "environment",
                "params": {"matmul_size": sizes.matmul_size, "copy_bytes": sizes.copy_bytes},
                "timeout_s": sizes.case_timeout_s,
            }
        ]
    if phase == "train_step":
        return [
            {
                "name": name,
                "kind": "train",
                "params": {
                    "option_set": option_set,
                    "reconstruction_only": reconstruction_only,
                    "steps": sizes.steps,
                    "warmup": sizes.warmup,
                    "batch": sizes.batch,
                    "lr_size": sizes.lr_size,
                    **common,
                },
                "timeout_s": sizes.compile_timeout_s if option_set in COMPILING else sizes.case_timeout_s,
            }
            for name, option_set, reconstruction_only in TRAIN_OPTION_SETS
        ]
    if phase == "search_transfer":
        pairs = [
            (implementation, size)
            for size in sizes.search_sizes
            for implementation in ("lean", "straightforward")
        ]
        pairs += [
            (implementation, size)
            for size in sizes.fused_sizes
            for implementation in ("tiled", "tiled, torch passes")
        ]
        pairs += [
            (implementation, size) for size in sizes.crossover_sizes for implementation in ("direct", "tiled")
        ]
        return [
            {
                "name": f"{implementation} {size}",
                "kind": "search",
                "params": {"implementation": implementation, "size": size},
                "timeout_s": sizes.case_timeout_s,
            }
            for implementation, size in pairs
        ]
    if phase == "inference":
        cases = [
            {
                "name": f"{implementation} {size}",
                "kind": "inference",
                "params": {"implementation": implementation, "size": size, **common},
                "timeout_s": sizes.case_timeout_s,
            }
            for size in sizes.inference_sizes
            for implementation in ("lean", "straightforward")
        ]
        # the largest output again on infer's path, within a consumer GPU's memory (tiled)
        largest = sizes.inference_sizes[-1]
        return cases + [
            {
                "name": f"budgeted {largest}",
                "kind": "inference",
                "params": {
                    "implementation": "budgeted",
                    "size": largest,
                    "max_memory": sizes.inference_budget_bytes,
                    **common,
                },
                "timeout_s": sizes.case_timeout_s,
            }
        ]
    if phase == "official":
        train = [
            {
                "name": f"official train step{', warm-up step' if reconstruction_only else ''}",
                "kind": "official_train",
                "params": {
                    "reconstruction_only": reconstruction_only,
                    "steps": sizes.steps,
                    "warmup": sizes.warmup,
                    "batch": sizes.batch,
                    "lr_size": sizes.lr_size,
                    "official_dir": str(official_dir),
                    **common,
                },
                "timeout_s": sizes.case_timeout_s,
            }
            for reconstruction_only in (False, True)
        ]
        return train + [
            {
                "name": f"official {size}",
                "kind": "official_inference",
                "params": {"size": size, "official_dir": str(official_dir), **common},
                "timeout_s": sizes.case_timeout_s,
            }
            for size in sizes.inference_sizes
        ]
    raise ValueError(f"{phase} is not a worker phase")


# -------------------------------------------------------------------------------- orchestrator
class Suite:
    """Runs the phases under one deadline and collects every result into ``results.json``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = DRY_RUN if args.dry_run else PAPER
        self.device = "cpu" if args.dry_run else "cuda"
        self.out: Path = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = (self.out / "suite.log").open("a")
        self.work = Path(tempfile.mkdtemp(prefix="gpu_suite_"))
        self.started = time.monotonic()
        self.deadline = self.started + args.budget_s
        self.env = self._child_environment()
        self.results: dict[str, Any] = {
            "suite": {
                "dry_run": args.dry_run,
                "device": self.device,
                "budget_s": args.budget_s,
                "sizes": asdict(self.sizes),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv),
            },
            "phases": {},
        }

    def _child_environment(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="disabled")
        if importlib.util.find_spec("ttsr_lightning") is None:  # not installed: run from the checkout
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
        if self.args.dry_run:
            env["TORCH_COMPILE_DISABLE"] = "1"  # inductor's CPU build takes minutes on small machines
        return env

    def say(self, message: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f} s] {message}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def phase_deadline(self, phase: str, later: list[str]) -> float:
        own = time.monotonic() + PHASE_BUDGETS_S[phase] * self.args.budget_scale
        return min(own, self.deadline - RESERVE_S * len(later))

    def run(self) -> int:
        phases = [phase for phase in PHASES if phase in self.args.phases]
        for index, phase in enumerate(phases):
            deadline = self.phase_deadline(phase, phases[index + 1 :])
            began = time.monotonic()
            self.say(f"phase {phase}: {max(0.0, deadline - began):.0f} s")
            if phase == "projection":
                record = project_recipe(self.results["phases"])
            elif deadline <= began:
                record = {"status": "skipped", "reason": "the suite's budget was spent before this phase"}
            elif phase == "gpu_tests":
                record = self.gpu_tests(deadline)
            elif phase == "official" and (reason := _official_missing(self.args.official_dir)):
                record = {"status": "skipped", "reason": reason}
            else:
                record = self.worker_phase(phase, deadline)
            record.setdefault("status", "done")
            record["seconds"] = time.monotonic() - began
            self.results["phases"][phase] = record
            self.write_results()
            if phase == "environment" and not self.args.dry_run:
                environment = record.get("cases", [{}])[0]
                if environment.get("cuda_available") is False:
                    self.say("no CUDA device: stopping (use --dry-run on a machine without a GPU)")
                    self.finish()
                    return 2
        self.finish()
        return 0

    def finish(self) -> None:
        self.results["suite"]["seconds"] = time.monotonic() - self.started
        self.write_results()
        summary = summary_markdown(self.results)
        (self.out / "summary.md").write_text(summary)
        shutil.rmtree(self.work, ignore_errors=True)
        self.log.close()
        print("\n" + summary, flush=True)

    def write_results(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2, default=str) + "\n")

    # ------------------------------------------------------------------ worker phases
    def worker_phase(self, phase: str, deadline: float) -> dict[str, Any]:
        cases = phase_cases(phase, self.sizes, self.args.official_dir)
        chosen = self.sizes.train_cases
        left_out = {
            case["name"]
            for case in cases
            if case["kind"] == "train" and chosen is not None and case["name"] not in chosen
        }
        results = {name: {"status": "skipped", "reason": DRY_RUN_SKIPPED} for name in left_out}
        results.update(self.run_cases([case for case in cases if case["name"] not in left_out], deadline))
        return {"cases": [{"name": case["name"], **results[case["name"]]} for case in cases]}

    def run_cases(self, cases: list[dict[str, Any]], deadline: float) -> dict[str, dict[str, Any]]:
        """Every case's record; workers are restarted after a crash or a timeout."""
        pending = list(cases)
        results: dict[str, dict[str, Any]] = {}
        while pending:
            if time.monotonic() >= deadline:
                for case in pending:
                    results[case["name"]] = {"status": "skipped", "reason": "the phase's budget was spent"}
                break
            batch = pending[:1] if self.args.isolate else pending
            for name, record in self.run_worker_process(batch, deadline).items():
                results[name] = record
            pending = [case for case in pending if case["name"] not in results]
        return results

    def run_worker_process(self, cases: list[dict[str, Any]], deadline: float) -> dict[str, dict[str, Any]]:
        """One worker over ``cases`` until it ends, a case outlives its timeout, or the deadline."""
        cases_file, events_file = self.work / "cases.json", self.work / "events.jsonl"
        cases_file.write_text(json.dumps(cases))
        events_file.write_text("")
        timeouts = {case["name"]: case["timeout_s"] for case in cases}
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            str(cases_file),
            str(events_file),
            "--device",
            self.device,
        ]
        self.log.write(f"--- worker: {', '.join(timeouts)}\n")
        self.log.flush()
        process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        results: dict[str, dict[str, Any]] = {}
        current: tuple[str, float] | None = None
        read = 0
        while True:
            finished = process.poll() is not None
            lines = events_file.read_text().split("\n")[:-1]  # complete lines only
            for line in lines[read:]:
                event = json.loads(line)
                if event["event"] == "start":
                    current = (event["name"], time.monotonic())
                    self.say(f"  {event['name']} ...")
                else:
                    results[event["name"]] = event["result"]
                    current = None
                    self.say(f"  {event['name']}: {_one_line(event['result'])}")
            read = len(lines)
            if finished:
                break
            now = time.monotonic()
            if current is not None and now - current[1] > timeouts[current[0]]:
                _stop(process)
                results[current[0]] = {"status": "timed out", "reason": f"over {timeouts[current[0]]:.0f} s"}
                self.say(f"  {current[0]}: timed out after {timeouts[current[0]]:.0f} s")
                return results
            if now >= deadline:
                _stop(process)
                if current is not None:
                    results[current[0]] = {
                        "status": "timed out",
                        "reason": f"stopped after {now - current[1]:.0f} s: the phase's budget was spent",
                    }
                return results
            time.sleep(0.2)
        # Every worker settles at least one case, so the caller's restarts always progress.
        unsettled = (
            current[0] if current else next((c["name"] for c in cases if c["name"] not in results), None)
        )
        if unsettled is not None:
            results[unsettled] = {
                "status": "failed",
                "error": f"the worker exited with status {process.returncode} during this case (suite.log)",
            }
        return results

    # ------------------------------------------------------------------ pytest
    def gpu_tests(self, deadline: float) -> dict[str, Any]:
        junit, log_path = self.out / "pytest_junit.xml", self.out / "pytest.log"
        reports = self.out / "pytest_reports.jsonl"  # tests/gpu/conftest.py: one line per test, at once
        reports.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "pytest", "-m", "gpu", str(REPO_ROOT / "tests" / "gpu"), "-v", "-rA",
            "-p", "no:cacheprovider", f"--junitxml={junit}",
        ]  # fmt: skip
        if importlib.util.find_spec("pytest_timeout") is not None:
            command.append(f"--timeout={self.sizes.compile_timeout_s:.0f}")
        if self.args.tests:
            command += ["-k", self.args.tests]
        with log_path.open("w") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                # the resume test runs with deterministic algorithms: cuBLAS reads this at its start
                env=dict(self.env, CUBLAS_WORKSPACE_CONFIG=":4096:8", GPU_TEST_REPORTS=str(reports)),
                cwd=REPO_ROOT,
                start_new_session=True,
            )
            try:
                returncode: int | None = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _stop(process)
                returncode = None
        record: dict[str, Any] = {"command": " ".join(command), "returncode": returncode}
        if returncode is None:
            record["status"] = "timed out"
            record["reason"] = (
                "pytest stopped: the phase's budget was spent (pytest.log shows how far it got)"
            )
            record["tests"] = _outcomes_from_reports(reports) or _outcomes_from_log(log_path.read_text())
        else:
            record["status"] = "passed" if returncode in (0, 5) else "failed"  # 5: nothing collected
            # the reports carry each test's printed output too; the JUnit XML where they are missing
            record["tests"] = _outcomes_from_reports(reports) or _junit_summary(junit)["tests"]
        self.say(f"  pytest -m gpu: {record['status']}, {outcome_counts(record.get('tests', []))}")
        return record


def _stop(process: subprocess.Popen[Any]) -> None:
    """Kills a worker or pytest started by this suite, with the processes it started (its own group)."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _official_missing(official_dir: Path) -> str | None:
    from official_harness import missing_reason

    return missing_reason(official_dir)


def _one_line(record: dict[str, Any]) -> str:
    status = record.get("status", "?")
    if status != "ok":
        return f"{status}: {record.get('reason') or record.get('error', '')}"[:200]
    for key in ("samples_per_second", "seconds"):
        if key in record:
            return f"{key} {record[key]:.4g}, peak {record.get('peak_bytes', 0) / 2**30:.2f} GiB"
    return "ok"


def _junit_summary(junit: Path) -> dict[str, Any]:
    if not junit.is_file():
        return {"tests": [], "junit": "not written"}
    root = ElementTree.parse(junit).getroot()
    tests = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (element.get("message") or "")[:300]
        tests.append(
            {
                "test": f"{case.get('classname')}::{case.get('name')}",
                "outcome": outcome,
                "seconds": float(case.get("time") or 0),
                "message": message,
            }
        )
    return {"tests": tests}


def _outcomes_from_reports(reports: Path) -> list[dict[str, Any]]:
    """Per-test outcomes as ``tests/gpu/conftest.py`` wrote them, test by test (survives a stop)."""
    if not reports.is_file():
        return []
    return [json.loads(line) for line in reports.read_text().splitlines() if line.strip()]


def _outcomes_from_log(log: str) -> list[dict[str, Any]]:
    """Per-test outcomes from a ``pytest -v`` log cut short (no JUnit XML then)."""
    return [
        {"test": match.group(1), "outcome": match.group(2).lower(), "seconds": 0.0, "message": ""}
        for match in re.finditer(r"^(\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR)", log, flags=re.MULTILINE)
    ]


# ------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "results" / "gpu_suite")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks the code paths")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--budget-s", type=float, help=f"whole-suite deadline (default {GPU_BUDGET_S} s)")
    parser.add_argument(
        "--budget-scale",
        type=float,
        default=1.0,
        help="multiplies every phase's budget (e.g. 2 on a slower GPU)",
    )
    parser.add_argument("--isolate", action="store_true", help="one process per case (slower)")
    parser.add_argument("--tests", help="gpu_tests phase: only the tests pytest -k selects (a rerun)")
    parser.add_argument("--official-dir", type=Path, default=REPO_ROOT / "third_party" / "TTSR")
    parser.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--device", choices=["cpu", "cuda"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(*args.worker, device=args.device)
        return 0
    if args.budget_s is None:
        args.budget_s = DRY_RUN_BUDGET_S if args.dry_run else GPU_BUDGET_S
    if args.dry_run:
        args.budget_scale = max(args.budget_scale, DRY_RUN_BUDGET_SCALE)
    return Suite(args).run()


if __name__ == "__main__":
    sys.exit(main())
