"""A new loss term is one config entry and its class: no edit to src/ (the class in helpers/extra_loss.py,
added by a Hydra override)."""

from __future__ import annotations

from pathlib import Path

import torch

from helpers.checkpoints import fit_one_batch
from helpers.config import compose_config
from helpers.extra_loss import EdgeLoss, FrozenFeatureLoss
from ttsr_lightning.system import TTSRSystem
from ttsr_lightning.train import build_system

EDGE = "+loss.terms.edge={_target_: helpers.extra_loss.EdgeLoss, weight: 0.1, after_warmup: false}"
FEATURES = "+loss.terms.features={_target_: helpers.extra_loss.FrozenFeatureLoss, weight: 0.1}"


def one_batch_step(tmp_path: Path, overrides: list[str]) -> TTSRSystem:
    """The system of the tiny config with ``overrides`` after one warm-up training batch."""
    cfg = compose_config(tmp_path, tmp_path / "data", ["optim.warmup_epochs=1", *overrides])
    torch.manual_seed(0)
    system = build_system(cfg)
    images = torch.Generator().manual_seed(1)

    def image(size: int) -> torch.Tensor:
        return torch.rand(3, size, size, generator=images) * 2 - 1

    batch = {"lr": image(8), "lr_up": image(32), "hr": image(32), "ref": image(32), "ref_down_up": image(32)}
    fit_one_batch(system, batch, tmp_path)
    return system


def test_a_term_added_by_config_alone_is_called_logged_and_changes_the_gradient(tmp_path: Path) -> None:
    plain = one_batch_step(tmp_path / "plain", [])
    edged = one_batch_step(tmp_path / "edge", [EDGE])
    edge = edged.loss_terms["edge"]
    assert isinstance(edge, EdgeLoss) and edge.calls == 1
    assert "edge" not in plain.loss_terms
    metrics = edged.trainer.callback_metrics
    assert metrics["train/loss_edge"] > 0
    # the same first forward pass (same seed), so the same reconstruction term; the total adds 0.1 * edge
    assert torch.equal(metrics["train/loss_reconstruction"], plain.trainer.callback_metrics["train/loss"])
    torch.testing.assert_close(
        metrics["train/loss"], metrics["train/loss_reconstruction"] + 0.1 * metrics["train/loss_edge"]
    )
    # the gradients of the batch's generator step (kept after the step) differ
    gradients = [
        (p.grad, q.grad)
        for p, q in zip(plain.generator.parameters(), edged.generator.parameters(), strict=True)
    ]
    assert any(a is not None and b is not None and not torch.equal(a, b) for a, b in gradients)


def test_a_term_declaring_frozen_weights_is_left_out_of_run_checkpoints_and_rebuilt_on_load(
    tmp_path: Path,
) -> None:
    system = one_batch_step(tmp_path / "run", [FEATURES])
    features = system.loss_terms["features"]
    assert isinstance(features, FrozenFeatureLoss) and features.calls == 1
    # declared by the terms themselves: the perceptual loss's VGG19 and the new term's conv
    assert set(system.frozen_prefixes) == {
        "lpips.",
        "lte_copy.",
        "loss_terms.perceptual.",
        "loss_terms.features.",
    }
    path = tmp_path / "run.ckpt"
    system.trainer.save_checkpoint(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert "loss_terms.features.conv.weight" in system.state_dict()
    assert not any(name.startswith(system.frozen_prefixes) for name in saved)
    assert any(name.startswith("generator.") for name in saved)

    # a new system of the same config loads the file; its own frozen weights stand in for the left-out ones
    cfg = compose_config(tmp_path / "again", tmp_path / "data", ["optim.warmup_epochs=1", FEATURES])
    torch.manual_seed(5)
    again = build_system(cfg)
    own = again.loss_terms["features"].conv.weight.clone()
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    again.on_load_checkpoint(checkpoint)
    again.load_state_dict(checkpoint["state_dict"])
    assert torch.equal(again.loss_terms["features"].conv.weight, own)
    for name, value in saved.items():
        assert torch.equal(again.state_dict()[name], value), name
