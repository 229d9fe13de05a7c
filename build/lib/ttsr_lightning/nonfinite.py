"""The non-finite guard of the training step, without host synchronisation.

Reading a device tensor on the host (``bool(t)``, ``t.item()``) waits for every kernel queued before
it: a step that checks its losses that way drains the device queue at each check. The guard keeps the
decision on the device instead:

- :meth:`NonFiniteGuard.check` turns the loss terms and the gradient norm of one optimiser step into a
  device flag, agreed by all ranks (an all-reduce on the device: no host read), and folds it into the
  batch's flag: once a check of a batch fails, every later step of that batch is skipped too;
- :func:`step_where` runs ``optimizer.step()`` and keeps its effect on the parameters and the optimiser
  state only where the flag holds (a device-side select over a snapshot): a skipped step leaves
  weights, moments and step counts bit-identical, so no non-finite value ever reaches them;
- :meth:`NonFiniteGuard.end_batch` copies the batch's checked values to the host asynchronously, and
  :meth:`NonFiniteGuard.settle` reads them later: the batches :data:`LAG_BATCHES` back (by then the
  device has finished them, so the wait costs nothing), or all of them before a checkpoint is written
  or an epoch ends. What the training policy does with a bad batch (skip with a warning, or stop) is
  the caller's; it learns of it at most :data:`LAG_BATCHES` batches late, and always before a
  checkpoint: no checkpoint is written after a batch that should have stopped the run.

The batches to settle are counted, not timed, so every rank settles the same batches at the same
point and raises together.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

# Batches between a batch and the reading of its checks: its values are then long on the host.
LAG_BATCHES = 2


@dataclass(frozen=True)
class Finding:
    """A batch whose checks failed: where, which check, and the values that were not finite."""

    epoch: int
    batch_idx: int  # in the epoch
    run_batch: int  # 1-based count of the run's training batches
    kind: str  # the failed check ("loss", "critic loss")
    bad: tuple[tuple[str, float], ...]  # (name, value) on this rank; empty: it failed on another rank


@dataclass
class _Check:
    kind: str
    names: tuple[str, ...]


@dataclass
class _Batch:
    epoch: int
    batch_idx: int
    run_batch: int
    checks: list[_Check]
    host_values: Tensor  # every check's values, then each check's all-ranks failure flag
    copied: Any = None  # a CUDA event recorded after the copy; None: already on the host


@dataclass
class NonFiniteGuard:
    """Device-side finite checks of a training batch, read on the host a few batches later."""

    _checks: list[_Check] = field(default_factory=list)
    _values: list[Tensor] = field(default_factory=list)
    _failed: list[Tensor] = field(default_factory=list)
    _keep: Tensor | None = None
    _pending: list[_Batch] = field(default_factory=list)

    def check(
        self, kind: str, terms: dict[str, Tensor], gradient_name: str, gradients: list[Tensor]
    ) -> Tensor:
        """Folds one step's check into the batch's flag and returns it: a 0-dim bool device tensor,
        True while every check of the batch so far was finite on every rank.

        terms: 0-dim loss values; gradients: the step's gradients (their total norm is checked).
        """
        values = [value.detach().float().reshape(1) for value in terms.values()]
        device = values[0].device
        norm = torch.nn.utils.get_total_norm(gradients) if gradients else torch.zeros((), device=device)
        checked = torch.cat([*values, norm.detach().float().reshape(1)])
        failed = _any_rank(~checked.isfinite().all())
        self._checks.append(_Check(kind, (*terms, gradient_name)))
        self._values.append(checked)
        self._failed.append(failed)
        keep = ~failed if self._keep is None else self._keep & ~failed
        self._keep = keep
        return keep

    def end_batch(self, epoch: int, batch_idx: int, run_batch: int) -> None:
        """Closes the batch: its values start on their way to the host (nothing waits)."""
        if not self._checks:
            return
        values = torch.cat([*self._values, torch.stack(self._failed).float()])
        copied = None
        if values.is_cuda:
            values = values.to("cpu", non_blocking=True)  # into page-locked memory, asynchronously
            copied = torch.cuda.Event()
            copied.record()
        self._pending.append(_Batch(epoch, batch_idx, run_batch, self._checks, values, copied))
        self._checks, self._values, self._failed, self._keep = [], [], [], None

    def settle(self, up_to_run_batch: int | None = None) -> list[Finding]:
        """The failed batches among those ended up to ``up_to_run_batch`` (None: all), in order;
        waits for their values where they are not on the host yet."""
        due = [b for b in self._pending if up_to_run_batch is None or b.run_batch <= up_to_run_batch]
        self._pending = [b for b in self._pending if b not in due]
        findings = []
        for batch in due:
            if batch.copied is not None:
                batch.copied.synchronize()
            finding = _finding(batch)
            if finding is not None:
                findings.append(finding)
        return findings

    def clear(self) -> None:
        """Forgets every batch (a new fit)."""
        self._checks, self._values, self._failed, self._keep, self._pending = [], [], [], None, []


def _finding(batch: _Batch) -> Finding | None:
    values = batch.host_values.tolist()
    flags = values[len(values) - len(batch.checks) :]
    start = 0
    for check, failed in zip(batch.checks, flags, strict=True):
        checked = values[start : start + len(check.names)]
        start += len(check.names)
        if failed:
            bad = tuple(
                (name, value)
                for name, value in zip(check.names, checked, strict=True)
                if not math.isfinite(value)
            )
            return Finding(batch.epoch, batch.batch_idx, batch.run_batch, check.kind, bad)
    return None


def _any_rank(flag: Tensor) -> Tensor:
    """True on every rank where ``flag`` is True on any rank (an all-reduce on the device)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    count = flag.to(torch.int32)
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    return count.bool()


@torch.no_grad()
def step_where(optimizer: Any, keep: Tensor) -> None:
    """``optimizer.step()``, its effect on the parameters and the optimiser state kept only where
    ``keep`` (0-dim bool, on the parameters' device) is True; no host read.

    A skipped step leaves every parameter and state tensor bit-identical, and state created by the
    step (a parameter's first) at zero, which is Adam's initial state. The state must live on the
    parameters' device (on CUDA: Adam with ``capturable`` or ``fused``). Parameters without a gradient
    are not touched by the step and not snapshotted.
    """
    inner = getattr(optimizer, "optimizer", optimizer)  # the torch optimiser behind a wrapper
    params = [p for group in inner.param_groups for p in group["params"] if p.grad is not None]
    stepped_before = [p for p in params if inner.state.get(p)]
    before = [*params, *_state_tensors(inner, stepped_before)]
    snapshot = _Snapshot.of(inner, before, keep.device)
    snapshot.save()
    optimizer.step()
    snapshot.restore_unless(keep)
    if len(stepped_before) < len(params):  # a parameter's first step: its new state returns to zeros
        first = [p for p in params if not any(p is q for q in stepped_before)]
        for tensor in _state_tensors(inner, first):
            tensor.copy_(torch.where(keep, tensor, tensor.new_zeros(())))


def _state_tensors(optimizer: Any, params: list[Tensor]) -> list[Tensor]:
    """The floating-point state tensors of ``params``, parameter by parameter, in the state's order."""
    return [
        value
        for p in params
        for value in optimizer.state.get(p, {}).values()
        if isinstance(value, Tensor) and value.is_floating_point()
    ]


# The snapshot buffers of each optimiser (keyed by the torch optimiser behind any wrapper).
_SNAPSHOTS: weakref.WeakKeyDictionary[Any, _Snapshot] = weakref.WeakKeyDictionary()


class _Snapshot:
    """Flat copies of a list of tensors, one buffer per dtype: per step, a foreach copy before and
    after the step, one select and a foreach copy back, however many tensors."""

    def __init__(self, tensors: list[Tensor], device: torch.device) -> None:
        self.tensors = tensors
        self.groups: list[tuple[list[Tensor], Tensor, list[Tensor], Tensor, list[Tensor]]] = []
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for tensor in tensors:
            if tensor.device != device:
                raise ValueError(
                    f"step_where: optimiser tensors must live on {device} (the flag's device), found one "
                    f"on {tensor.device} (on CUDA, use Adam with capturable=True or fused=True)"
                )
            by_dtype.setdefault(tensor.dtype, []).append(tensor)
        for group in by_dtype.values():
            saved, saved_views = _flat_copy(group)
            stepped, stepped_views = _flat_copy(group)
            self.groups.append((group, saved, saved_views, stepped, stepped_views))

    @classmethod
    def of(cls, optimizer: Any, tensors: list[Tensor], device: torch.device) -> _Snapshot:
        """A torch optimiser's buffers, rebuilt when its tensors changed (its first steps, a state load)."""
        cached = _SNAPSHOTS.get(optimizer)
        if (
            cached is None
            or len(cached.tensors) != len(tensors)
            or any(a is not b for a, b in zip(cached.tensors, tensors, strict=True))
        ):
            cached = _SNAPSHOTS[optimizer] = cls(tensors, device)
        return cached

    def save(self) -> None:
        for group, _, saved_views, _, _ in self.groups:
            torch._foreach_copy_(saved_views, group)

    def restore_unless(self, keep: Tensor) -> None:
        """Each tensor := keep ? its value now : its saved value."""
        for group, saved, _, stepped, stepped_views in self.groups:
            torch._foreach_copy_(stepped_views, group)
            torch.where(keep, stepped, saved, out=stepped)
            torch._foreach_copy_(group, stepped_views)


def _flat_copy(tensors: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """An uninitialised flat buffer for ``tensors`` and its views shaped like each of them."""
    numels = [tensor.numel() for tensor in tensors]
    flat = torch.empty(sum(numels), dtype=tensors[0].dtype, device=tensors[0].device)
    return flat, [chunk.view_as(t) for chunk, t in zip(flat.split(numels), tensors, strict=True)]
