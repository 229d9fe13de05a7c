"""Memory budgets: the ``max_memory`` setting (bytes, a size with a unit, ``auto``, none), the memory
a device has free, and the byte counts printed in plans."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Literal, TypeAlias

import torch


def format_bytes(value: int) -> str:
    """'3.50 GiB', '512 MiB'."""
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


# A memory budget as configured: bytes, "auto" (from the device's free memory) or None (no budget).
MemorySetting: TypeAlias = int | Literal["auto"] | None

# Share of the free memory an "auto" budget takes: on CPU of MemAvailable (the process's own
# allocator keeps some freed memory, other processes run); on CUDA of the free memory plus what the
# caching allocator holds unused.
AUTO_FRACTION = {"cpu": 0.6, "cuda": 0.8}
_UNITS = {
    "": 1, "b": 1,
    "k": 2**10, "kib": 2**10, "kb": 10**3,
    "m": 2**20, "mib": 2**20, "mb": 10**6,
    "g": 2**30, "gib": 2**30, "gb": 10**9,
    "t": 2**40, "tib": 2**40, "tb": 10**12,
}  # fmt: skip


def parse_memory_setting(value: object, key: str = "max_memory") -> MemorySetting:
    """A configured budget: ``auto``, None / ``null`` / ``none`` (no budget), a number of bytes, or a
    size with a unit (``4GiB``, ``512MB``, ``1.5G``: K/M/G/T and KiB... are powers of 1024, KB/MB/GB/TB
    of 1000). Raises ValueError naming ``key`` and what is expected."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none")):
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    expected = f"{key}: expected auto, null or a size such as 4GiB, 512MB or a number of bytes, got {value!r}"
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int | float):
        number, unit = float(value), ""
    elif isinstance(value, str) and (
        match := re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", value)
    ):
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ValueError(expected)
    if unit not in _UNITS or not math.isfinite(number):
        raise ValueError(expected)
    size = int(number * _UNITS[unit])
    if size < 2**20:
        raise ValueError(f"{key}: {value!r} is {size} bytes; a budget needs at least 1 MiB")
    return size


def available_memory(device: torch.device) -> int:
    """Bytes free on ``device`` now: CUDA free memory plus the caching allocator's reserved but unused
    bytes; on CPU the kernel's MemAvailable (Linux), else the physical memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        match = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo.read_text(), flags=re.MULTILINE)
        if match:
            return int(match.group(1)) * 1024
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_budget(setting: MemorySetting, device: torch.device, processes: int = 1) -> int | None:
    """The budget in bytes for a setting: ``auto`` is :data:`AUTO_FRACTION` of the device's free
    memory, shared by ``processes`` processes on the same memory (CPU DDP); bytes and None as given."""
    if setting != "auto":
        return setting
    share = AUTO_FRACTION["cuda" if device.type == "cuda" else "cpu"] / max(1, processes)
    return int(share * available_memory(device))
