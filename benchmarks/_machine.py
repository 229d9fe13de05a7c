"""Names the machine a benchmark ran on, so every printed table says where its numbers come from.

from _machine import machine_description   # benchmarks/ is on sys.path when a script there runs
print(machine_description())   # "AMD EPYC (2 cores, 2 torch threads), 23.4 GiB RAM, torch 2.13.0+cpu"
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what the platform module knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    """Total RAM in GiB from /proc/meminfo, or None where there is no such file."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20  # the value is in kB
    return None


def gpu_description() -> str | None:
    """'NVIDIA H100 80GB HBM3 (79.1 GiB)' for CUDA device 0, or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(0)
    return f"{properties.name} ({properties.total_memory / 2**30:.1f} GiB)"


def machine_description() -> str:
    """One line: CPU model, cores, torch threads, RAM, torch version and the GPU if any."""
    parts = [f"{cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"]
    if (memory := memory_gib()) is not None:
        parts.append(f"{memory:.1f} GiB RAM")
    parts.append(f"torch {torch.__version__}")
    if (gpu := gpu_description()) is not None:
        parts.append(f"GPU {gpu}")
    return ", ".join(parts)


if __name__ == "__main__":
    print(machine_description())
