"""The machine a benchmark ran on and its ceilings, printed and recorded with every result.

    python benchmarks/environment.py [--device cuda] [--tiny]

:func:`machine_description` (``ttsr_lightning.provenance``, what every run records too) is one line
(CPU, cores, torch threads, RAM, torch, the GPU);
:func:`environment` adds the package versions and the two ceilings a step's time is judged against,
measured on random data: the device-to-device copy bandwidth (bytes read + written) and the matmul
rates in bf16, fp32 and TF32 (8192^3 on a GPU, 1024^3 on a CPU, 256^3 with ``--tiny``).
"""

from __future__ import annotations

import argparse
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from ttsr_lightning.provenance import machine_description

PACKAGES = ("torch", "lightning", "torchmetrics", "triton", "hydra-core", "omegaconf")


def _seconds(device: str, call: Any, repeats: int = 5) -> float:
    """Best seconds of ``call()`` over ``repeats`` runs after one warm-up run (synchronised)."""
    call()
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def environment(device: str, tiny: bool = False) -> dict[str, Any]:
    """The machine, the package versions, the copy bandwidth and the bf16 / fp32 / TF32 matmul rates."""
    size = 256 if tiny else 8192 if device == "cuda" else 1024
    copy_bytes = 2**24 if tiny else 2**31 if device == "cuda" else 2**28
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    source = torch.rand(copy_bytes // 4, device=device)
    target = torch.empty_like(source)
    copy = 2 * copy_bytes / _seconds(device, lambda: target.copy_(source))
    precision = torch.get_float32_matmul_precision()
    rates = {}
    for name, dtype, matmul_precision in (
        ("bf16", torch.bfloat16, "highest"),
        ("fp32", torch.float32, "highest"),
        ("tf32", torch.float32, "high"),
    ):
        torch.set_float32_matmul_precision(matmul_precision)
        left, right = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
        rates[name] = 2 * size**3 / _seconds(device, lambda left=left, right=right: left @ right)
    torch.set_float32_matmul_precision(precision)
    return {
        "machine": machine_description(),
        "device": device,
        "packages": packages,
        "copy_bytes_per_second": copy,
        "matmul_size": size,
        "matmul_flops_per_second": rates,
    }


def describe(record: dict[str, Any]) -> str:
    """Two lines: the machine and packages, then the measured ceilings."""
    packages = ", ".join(f"{name} {value}" for name, value in record["packages"].items() if value)
    rates = ", ".join(
        f"{name} {rate / 1e12:.3g} TFLOP/s" for name, rate in record["matmul_flops_per_second"].items()
    )
    return (
        f"Machine: {record['machine']}; {packages}\n"
        f"Ceilings on {record['device']}: copy {record['copy_bytes_per_second'] / 1e9:.4g} GB/s (read + "
        f"write); {record['matmul_size']}^3 matmul {rates}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--tiny", action="store_true", help="small sizes (seconds on a CPU)")
    arguments = parser.parse_args()
    print(describe(environment(arguments.device, arguments.tiny)))
