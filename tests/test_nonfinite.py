"""The non-finite guard: a skipped step is bit-exact, a kept one is the optimiser's, checks settle late."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ttsr_lightning.nonfinite import LAG_BATCHES, NonFiniteGuard, step_where


def _model_and_adam(fused: bool = False) -> tuple[nn.Module, torch.optim.Adam]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    return model, torch.optim.Adam(model.parameters(), lr=1e-2, fused=fused)


def _backward(model: nn.Module, scale: float = 1.0) -> None:
    model.zero_grad(set_to_none=True)
    (model(torch.linspace(-1, 1, 8).view(2, 4)).sum() * scale).backward()


def _state(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    tensors = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        tensors += [v.clone() for v in optimizer.state.get(p, {}).values() if torch.is_tensor(v)]
    return tensors


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
def test_a_kept_step_is_the_optimisers_step_and_a_skipped_one_changes_nothing(fused: bool) -> None:
    model, adam = _model_and_adam(fused)
    twin, twin_adam = copy.deepcopy(model), None
    twin_adam = torch.optim.Adam(twin.parameters(), lr=1e-2, fused=fused)
    keep, skip = torch.tensor(True), torch.tensor(False)

    _backward(model, scale=float("nan"))  # a first step that must not happen: no state is left behind
    step_where(adam, skip)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters(), strict=True))
    assert all(not v.any() for state in adam.state.values() for v in state.values())

    for _ in range(3):
        _backward(model)
        step_where(adam, keep)
        _backward(twin)
        twin_adam.step()
        assert all(
            torch.equal(a, b) for a, b in zip(_state(model, adam), _state(twin, twin_adam), strict=True)
        )

    before = _state(model, adam)
    _backward(model, scale=float("inf"))
    step_where(adam, skip)
    assert all(torch.equal(a, b) for a, b in zip(before, _state(model, adam), strict=True))
    _backward(model)  # and the run goes on as if the skipped batch had never been
    step_where(adam, keep)
    _backward(twin)
    twin_adam.step()
    assert all(torch.equal(a, b) for a, b in zip(_state(model, adam), _state(twin, twin_adam), strict=True))


def test_a_failed_check_skips_the_rest_of_the_batch_and_settles_late() -> None:
    guard = NonFiniteGuard()
    finite = {"reconstruction": torch.tensor(0.5)}
    gradients = [torch.ones(3)]
    for run_batch in (1, 2, 3):
        critic = torch.tensor(float("nan") if run_batch == 2 else 1.0)
        first = guard.check("critic loss", {"critic": critic}, "critic gradient", gradients)
        second = guard.check("loss", finite, "generator gradient", gradients)
        assert bool(first) == bool(second) == (run_batch != 2)  # a bad critic step skips the G step too
        guard.end_batch(epoch=0, batch_idx=run_batch - 1, run_batch=run_batch)
        assert guard.settle(run_batch - LAG_BATCHES) == []  # batch 2 is read at batch 4, not before
    (finding,) = guard.settle()
    assert (finding.run_batch, finding.batch_idx, finding.kind) == (2, 1, "critic loss")
    assert len(finding.bad) == 1 and finding.bad[0][0] == "critic"
    assert guard.settle() == []

    guard.check("loss", finite, "generator gradient", [torch.tensor([1.0, float("inf")])])
    guard.end_batch(epoch=1, batch_idx=0, run_batch=4)
    (finding,) = guard.settle()
    assert finding.bad == (("generator gradient", float("inf")),)
