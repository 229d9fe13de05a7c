"""Counting, on the CPU, what would make a CUDA device's queue drain: host reads of tensor values.

On a GPU, reading a tensor's value on the host (``t.item()``, ``bool(t)``, ``float(t)``, ``t.tolist()``,
``t.cpu()``), making a device tensor from Python data (``torch.tensor([...], device="cuda")``: a
synchronous copy) and ops whose output size depends on the values (``nonzero``, boolean masks) wait for
every kernel queued before them. On the CPU nothing waits, but the same calls happen:
:class:`HostReads` records each one with the source line that made it (the first frame of this
repository's code, else the innermost installed frame outside torch), by dispatcher op for what reaches the
dispatcher and by patched ``torch.Tensor`` method for the conversions that do not on the CPU.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
# ops that read values on the host, copy Python data to the device, or size their output by the values
SYNCING_OPS = {
    aten._local_scalar_dense,  # item(), bool(), float(), int()
    aten.lift_fresh,  # torch.tensor(python data)
    aten.lift_fresh_copy,
    aten.nonzero,
    aten.masked_select,
    aten.equal,
    aten._unique2,
    aten.unique_dim,
    aten.unique_consecutive,
    aten.repeat_interleave,
}
# conversions that leave no trace in the dispatcher for a CPU tensor but copy from the GPU there
PATCHED_METHODS = ("tolist", "numpy", "cpu")
REPOSITORY = str(Path(__file__).resolve().parents[2])


def _origin(ignore: Callable[[str], bool]) -> str | None:
    """``file:line`` of the call (see the module docstring), or None when ``ignore`` claims a frame."""
    frame = sys._getframe(2)
    ours = first_outside_torch = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if ignore(filename):
            return None
        installed = "/site-packages/" in filename
        if ours is None and not installed and filename.startswith(REPOSITORY) and "/helpers/" not in filename:
            ours = f"{Path(filename).relative_to(REPOSITORY)}:{frame.f_lineno}"
        if first_outside_torch is None and installed and "/site-packages/torch/" not in filename:
            first_outside_torch = f"{filename.rsplit('/site-packages/', 1)[-1]}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return ours or first_outside_torch


class HostReads(TorchDispatchMode):
    """Records host reads while active; ``ignore(filename)`` drops those made under a file (e.g. the
    optimisers' CPU step counts, which live on the device on CUDA)."""

    def __init__(self, ignore: Callable[[str], bool] = lambda filename: False) -> None:
        super().__init__()
        self.ignore = ignore
        self.reads: list[str] = []
        self._saved: dict[str, Any] = {}

    def _record(self, what: str) -> None:
        origin = _origin(self.ignore)
        if origin is not None:
            self.reads.append(f"{what} at {origin}")

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func.overloadpacket in SYNCING_OPS:
            self._record(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))

    def __enter__(self) -> HostReads:
        for name in PATCHED_METHODS:
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def counted(
                tensor: torch.Tensor, *args: Any, _name: str = name, _original: Any = original
            ) -> Any:
                self._record(f"Tensor.{_name}")
                return _original(tensor, *args)

            setattr(torch.Tensor, name, counted)
        return super().__enter__()  # type: ignore[no-any-return]

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)

    def since(self, start: int) -> Counter[str]:
        """The reads recorded after the first ``start``, counted by kind and origin."""
        return Counter(self.reads[start:])
