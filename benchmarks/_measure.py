"""Time and peak memory of one call, each case in a fresh process (shared by the benchmarks).

A case measured in its own process cannot inherit another's allocations or cached blocks:
:func:`run_case` starts ``python <script> --worker IMPLEMENTATION SIZE ...`` and reads the JSON the
script prints last (:func:`run_worker_if_asked` on the script's side); inside it :func:`timed_peak`
measures one call. Peak memory is, on CPU, the growth of the process's
peak RSS (VmHWM, reset through /proc/self/clear_refs) over its resident size just before the call,
and on GPU ``torch.cuda.max_memory_allocated()`` over the memory allocated before the call. Both
include the call's outputs.

:func:`parse_arguments` gives every such script the same options: ``--device``, ``--tiny`` (the same
code path on tiny sizes and one torch thread: seconds on a CPU, what ``tests/benchmarks`` runs),
``--budget-gb``, ``--threads`` and ``--out`` (default ``outputs/benchmarks/``, git-ignored).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# git-ignored: the raw records stay out of the source tree (RESULTS.md is the record)
RESULTS_DIR = Path(__file__).resolve().parents[1] / "outputs" / "benchmarks"
# (implementation, size, the parsed options: device, tiny, ...) -> numbers
WorkerFunction = Callable[[str, str, argparse.Namespace], dict[str, Any]]
PAPER_MODEL = (64, (16, 16, 8, 4))  # n_feats, residual blocks per stage
TINY_MODEL = (8, (1, 1, 1, 1))
# the columns of the straightforward vs lean search-transfer comparisons (search_transfer, inference)
STRAIGHTFORWARD_VS_LEAN = (
    "straightforward time",
    "lean time",
    "speed-up",
    "straightforward peak",
    "lean peak",
    "memory ratio",
)


def add_tiny_option(parser: argparse.ArgumentParser) -> None:
    """``--tiny``: the script's code path on its smallest sizes, what ``tests/benchmarks`` runs."""
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="the same code path with tiny sizes: seconds on a CPU, checks only",
    )


def parse_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Adds the options every comparison benchmark takes (and the hidden --worker), then parses."""
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    add_tiny_option(parser)
    parser.add_argument(
        "--budget-gb",
        type=float,
        help="skip cases estimated above this (default: 20 on CPU, free GPU memory)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads in every case (default: torch's)")
    parser.add_argument(
        "--out", type=Path, help="folder for the JSON and plots (outputs/benchmarks, with --tiny its tiny/)"
    )
    parser.add_argument("--worker", nargs=2, metavar=("IMPLEMENTATION", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU")
    if args.budget_gb is None:
        args.budget_gb = 20.0 if args.device == "cpu" else float("inf")
    if args.out is None:
        args.out = RESULTS_DIR / "tiny" if args.tiny else RESULTS_DIR
    if args.tiny and args.threads is None:
        args.threads = 1  # tiny ops gain nothing from threads, which stall each other on a busy CPU
    return args


def model_size(args: argparse.Namespace) -> tuple[int, tuple[int, ...]]:
    """(n_feats, residual blocks per stage): the paper's generator, or a tiny one with ``--tiny``."""
    return TINY_MODEL if getattr(args, "tiny", False) else PAPER_MODEL


def run_worker_if_asked(args: argparse.Namespace, run_worker: WorkerFunction) -> bool:
    """Applies --threads; in a case process (--worker given) runs the case and prints its JSON.

    Returns True when this process was a case process (the caller then stops).
    """
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.worker:
        return False
    implementation, size = args.worker
    print(json.dumps(run_worker(implementation, size, args)))
    return True


def status_bytes(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    status = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, flags=re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field} line; CPU peak memory needs Linux")
    return int(match.group(1)) * 1024


def timed_peak(call: Callable[[], object], device: str) -> tuple[float, int]:
    """(seconds, peak bytes above the state before the call) of ``call()``; its result counts."""
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        baseline = status_bytes("VmRSS")
    start = time.perf_counter()
    result = call()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if device == "cuda" else status_bytes("VmHWM")) - baseline
    del result
    return seconds, peak


def run_case(
    script: str, args: argparse.Namespace, implementation: str, size: str, extra: list[str] | None = None
) -> dict[str, Any] | str:
    """Runs one case of ``script`` in a fresh process with this run's options (and ``extra`` ones).

    Returns the JSON object the case printed last, or why it failed.
    """
    arguments = ["--worker", implementation, size, "--device", args.device, *(extra or [])]
    if getattr(args, "threads", None) is not None:
        arguments += ["--threads", str(args.threads)]
    if getattr(args, "tiny", False):
        arguments.append("--tiny")
    completed = subprocess.run(
        [sys.executable, script, *arguments], capture_output=True, text=True, check=False
    )
    if completed.returncode < 0:
        return "killed (out of memory?)"
    if completed.returncode != 0:
        return f"failed: {completed.stderr.strip()[-300:]}"
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def memory_budget(device: str, budget_gb: float) -> int:
    """The smaller of ``budget_gb`` and 90 % of the memory available now (CPU RAM or free GPU memory)."""
    if device == "cuda":
        available, _ = torch.cuda.mem_get_info()
    else:
        meminfo = Path("/proc/meminfo").read_text()
        match = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, flags=re.MULTILINE)
        available = int(match.group(1)) * 1024 if match else int(budget_gb * 2**30)
    return int(min(budget_gb * 2**30, 0.9 * available))


def ratio(numerator: float | None, denominator: float | None) -> str:
    """'4.2x', or '-' when either side was not measured."""
    return "-" if not numerator or not denominator else f"{numerator / denominator:.1f}x"


def gib(value: int | None) -> str:
    """'1.23 GiB', or '-' for a value that was not measured."""
    return "-" if value is None else f"{value / 2**30:.2f} GiB"


def seconds(value: float | None) -> str:
    """'1.23 s' ('12.3 ms' under 0.1 s), or '-' for a value that was not measured."""
    if value is None:
        return "-"
    return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.3g} ms"


def write_record(folder: Path, name: str, record: dict[str, Any]) -> Path:
    """Writes a benchmark's ``record`` as ``<folder>/<name>`` (JSON) and says so with the load average
    at the end (the box may be shared: the record keeps the load at the start and at the end)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(record, indent=2))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}; wrote {path}")
    return path
