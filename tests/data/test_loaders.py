"""Loader workers and the end of the process: workers ignore a scheduler's SIGTERM, yet a process whose
persistent workers are still alive at exit ends at once instead of waiting for them forever."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import torch
from torch.utils.data import DataLoader, TensorDataset
from ttsr_lightning.data.loaders import ignore_stop_signals

loader = DataLoader(
    TensorDataset(torch.arange(8.0)), batch_size=2, num_workers=2, persistent_workers=True,
    worker_init_fn=ignore_stop_signals,
)
batches = iter(loader)
next(batches)  # the workers run and stay: the loader and its iterator live until the interpreter exits
print("workers", len(loader._iterator._workers), flush=True)
"""


def test_a_process_with_live_persistent_workers_exits_at_once(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    start = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(src)!r})\n{SCRIPT}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        subprocess.run(["pkill", "-9", "-s", str(process.pid)], check=False)  # the stuck workers too
        process.communicate()
        hung = "the process hung at exit, waiting for loader workers that ignore SIGTERM"
        raise AssertionError(hung) from None
    assert process.returncode == 0, output
    assert "workers 2" in output
    assert time.monotonic() - start < 55
