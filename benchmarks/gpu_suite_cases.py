"""What the worker processes of gpu_suite.py run: the cases of one phase, measured in this process.

``python benchmarks/gpu_suite.py --worker CASES EVENTS --device D`` calls :func:`run_worker`: the
cases listed in CASES (JSON: name, kind, parameters) run one after another, and a JSON line per start
and per result is appended to EVENTS, which the orchestrator reads as they come, so a worker killed
inside a case loses that case only. A case's failure (an exception, CUDA running out of memory) is
its result; a case estimated not to fit the free memory is skipped with the estimate.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO


def run_worker(cases_file: Path, events_file: Path, device: str) -> None:
    """Runs the cases listed in ``cases_file`` one after another, appending a JSON line per event."""
    import torch

    cases = json.loads(cases_file.read_text())
    with events_file.open("a") as events:
        for case in cases:
            _event(events, {"event": "start", "name": case["name"]})
            started = time.perf_counter()
            try:
                record = {"status": "ok", **_run_case(case["kind"], case["params"], device)}
            except torch.cuda.OutOfMemoryError as error:
                record = {"status": "out of memory", "error": str(error).splitlines()[0]}
            except Exception as error:  # a case's failure is its result; the next case still runs
                record = {"status": "failed", "error": f"{type(error).__name__}: {error}"[:2000]}
                traceback.print_exc()
            record["wall_seconds"] = time.perf_counter() - started
            _event(events, {"event": "done", "name": case["name"], "result": record})
            _release(device)


def _event(events: TextIO, event: dict[str, Any]) -> None:
    events.write(json.dumps(event) + "\n")
    events.flush()
    os.fsync(events.fileno())


def _release(device: str) -> None:
    """Frees what a finished case left behind (compiled graphs, cached allocator blocks)."""
    import torch

    if "torch._dynamo" in sys.modules:  # (importing it only to reset it costs seconds)
        torch._dynamo.reset()
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def _run_case(kind: str, params: dict[str, Any], device: str) -> dict[str, Any]:
    if kind == "environment":
        return measure_environment(device, params["matmul_size"], params["copy_bytes"])
    if kind == "train":
        from train_step import measure_step

        blocks = tuple(params.pop("num_res_blocks"))
        return measure_step(params.pop("option_set"), device=device, num_res_blocks=blocks, **params)
    if kind == "search":
        return _search_case(params["implementation"], params["size"], device)
    if kind == "inference":
        return _inference_case(params, device)
    if kind == "official_train":
        import official_harness

        return official_harness.train_step(
            device,
            steps=params["steps"],
            warmup=params["warmup"],
            batch=params["batch"],
            lr_size=params["lr_size"],
            n_feats=params["n_feats"],
            num_res_blocks=tuple(params["num_res_blocks"]),
            reconstruction_only=params["reconstruction_only"],
            root=Path(params["official_dir"]),
        )
    if kind == "official_inference":
        return _inference_case({**params, "implementation": "official"}, device)
    raise ValueError(f"unknown case kind {kind!r}")


def _free_bytes(device: str) -> int:
    from _measure import memory_budget

    return memory_budget(device, budget_gb=1e6)  # 90 % of what is free now


def _search_case(implementation: str, size: str, device: str) -> dict[str, Any]:
    import search_transfer

    width, height, batch = search_transfer.parse_batched_size(size)
    straightforward = implementation in ("straightforward", "direct")
    estimate = batch * search_transfer.estimated_bytes(
        "straightforward" if straightforward else "lean", width * height
    )
    record: dict[str, Any] = {"positions": width * height, "batch": batch, "estimated_bytes": estimate}
    free = _free_bytes(device)
    if straightforward and estimate > free:
        return {**record, "status": "skipped", "reason": _does_not_fit(estimate, free)}
    return {**record, **search_transfer.run_worker(implementation, size, device)}


def _inference_case(params: dict[str, Any], device: str) -> dict[str, Any]:
    import inference

    implementation = params["implementation"]
    width, height = inference.parse_size(params["size"])
    # the official search is the straightforward formulation: the same estimate
    estimate = inference.estimated_bytes(
        "lean" if implementation == "lean" else "straightforward", width, height
    )
    record: dict[str, Any] = {"estimated_bytes": estimate}
    if implementation == "budgeted":
        record["budget_bytes"] = params["max_memory"]
    free = _free_bytes(device)
    # lean and budgeted always run: running out is a result
    if implementation not in ("lean", "budgeted") and estimate > free:
        return {**record, "status": "skipped", "reason": _does_not_fit(estimate, free)}
    blocks = tuple(params["num_res_blocks"])
    if implementation == "official":
        import official_harness

        result = official_harness.inference(
            device,
            width,
            height,
            n_feats=params["n_feats"],
            num_res_blocks=blocks,
            root=Path(params["official_dir"]),
        )
    elif implementation == "budgeted":
        result = inference.measure_budgeted_inference(
            width, height, device, params["max_memory"], params["n_feats"], blocks
        )
    else:
        result = inference.measure_inference(implementation, width, height, device, params["n_feats"], blocks)
    return {**record, **result}


def _does_not_fit(estimate: int, free: int) -> str:
    return f"does not fit: estimated {estimate / 2**30:.1f} GiB, {free / 2**30:.1f} GiB usable"


def measure_environment(device: str, matmul_size: int, copy_bytes: int) -> dict[str, Any]:
    """Versions, the device, free memory and the two ceilings: copy bandwidth and matmul rates."""
    import torch
    from _machine import machine_description

    record: dict[str, Any] = {
        "machine": machine_description(),
        "python": platform.python_version(),
        "packages": _package_versions(),
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "defaults": {
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        },
    }
    if device == "cuda" and not torch.cuda.is_available():
        return record  # the suite stops: this is no GPU run
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info()
        record.update(
            gpu=properties.name,
            capability=f"{properties.major}.{properties.minor}",
            multiprocessors=properties.multi_processor_count,
            total_bytes=total,
            free_bytes=free,
            cudnn=torch.backends.cudnn.version(),
            nvidia_smi=_nvidia_smi(),
        )
    else:
        record["gpu"] = None
        record["not_measured"] = "no CUDA device (dry run): GPU properties and free GPU memory"
    record["copy_bytes_per_second"] = _copy_bandwidth(device, copy_bytes)
    record["matmul_flops_per_second"] = {
        name: _matmul_rate(device, matmul_size, dtype, precision)
        for name, dtype, precision in (
            ("bf16", torch.bfloat16, "highest"),
            ("fp32", torch.float32, "highest"),
            ("tf32", torch.float32, "high"),
        )
    }
    torch.set_float32_matmul_precision(record["defaults"]["float32_matmul_precision"])
    return record


def _package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for name in ("torch", "lightning", "torchmetrics", "triton", "hydra-core", "omegaconf", "torchvision"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def _nvidia_smi() -> str | None:
    """A read-only query of the card's state (clocks, temperature, power) before the measurements."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = "name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used"
    try:
        completed = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "nvidia-smi did not answer within 20 s"
    return completed.stdout.strip() or completed.stderr.strip()


def _timed(device: str, call: Any, repeats: int, warmup: int) -> float:
    """Mean seconds of ``call()`` over ``repeats`` runs after ``warmup`` runs (CUDA events on a GPU)."""
    import torch

    for _ in range(warmup):
        call()
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(repeats):
            call()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000 / repeats
    began = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - began) / repeats


def _copy_bandwidth(device: str, size_bytes: int) -> float:
    """Bytes read + written per second by a device-to-device copy of ``size_bytes`` (random data)."""
    import torch

    source = torch.rand(size_bytes // 4, device=device)
    target = torch.empty_like(source)
    seconds = _timed(device, lambda: target.copy_(source), repeats=10, warmup=3)
    return 2 * size_bytes / seconds


def _matmul_rate(device: str, size: int, dtype: Any, precision: str) -> float:
    """FLOP/s of a size^3 matrix product on random data (fp32 with the given matmul precision)."""
    import torch

    torch.set_float32_matmul_precision(precision)
    left = torch.randn(size, size, device=device, dtype=dtype)
    right = torch.randn(size, size, device=device, dtype=dtype)
    seconds = _timed(device, lambda: left @ right, repeats=10, warmup=3)
    return 2 * size**3 / seconds
