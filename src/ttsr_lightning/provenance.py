"""How a result was obtained: the code's commit, the models' parameter counts and the machine (float
results of one commit differ across CPUs: their vector instructions round sums differently)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from ttsr_lightning.config_paths import REPO_ROOT, RUNS_FROM_CLONE


def git_commit() -> str:
    """The repository's commit, with ``-dirty`` when the work tree has changes; ``unknown`` outside git;
    for an installed package (no clone), ``unknown (ttsr-lightning <version>, installed)``."""
    if not RUNS_FROM_CLONE:
        try:
            version = metadata.version("ttsr-lightning")
        except metadata.PackageNotFoundError:
            version = "?"
        return f"unknown (ttsr-lightning {version}, installed)"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def count_parameters(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (0 for None), optionally only those with requires_grad."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_counts(generator: nn.Module, discriminator: nn.Module | None = None) -> dict[str, int]:
    """Parameters of the generator, its main net, its trainable LTE and the critic (``params/*`` keys)."""
    return {
        "params/generator": count_parameters(generator),
        "params/main_net": count_parameters(getattr(generator, "main_net", None)),
        "params/lte_trainable": count_parameters(getattr(generator, "lte", None), trainable_only=True),
        "params/discriminator": count_parameters(discriminator),
    }


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
    parts.append(f"torch {torch.__version__}, Python {platform.python_version()}")
    if (gpu := gpu_description()) is not None:
        parts.append(f"GPU {gpu}, CUDA {torch.version.cuda}")
    return ", ".join(parts)
