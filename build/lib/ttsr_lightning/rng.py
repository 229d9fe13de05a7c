"""The random generators' states (Python, NumPy, torch CPU and CUDA) as checkpointable plain values."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and, where present, CUDA) states; tensors and plain values only,
    so that checkpoints load with ``weights_only``."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restores what :func:`rng_states` captured (CUDA only where CUDA is available)."""
    random.setstate(_as_tuple(states["python"]))
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    if "torch_cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch_cuda"])


def _as_tuple(value: Any) -> Any:
    """Checkpoint round trips turn the tuples of ``random.getstate()`` into lists; undo that."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value
