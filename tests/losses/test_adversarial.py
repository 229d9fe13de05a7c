"""WGAN-GP: the gradient penalty and the critic/generator objectives against closed forms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ttsr_lightning.losses import WGANGPLoss


class LinearCritic(nn.Module):
    """D(x) = <w, x> + b: its input gradient is w for every sample, so ||grad|| = ||w|| exactly."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(torch.tensor(0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(dim=1, keepdim=True) + self.bias


class QuadraticCritic(nn.Module):
    """D(x) = ||x||^2 / 2: its input gradient is x itself, so the penalty depends on each sample's eps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.pow(2).flatten(1).sum(dim=1, keepdim=True) / 2


def _images(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, 3, 4, 5, generator=generator) * 2 - 1, torch.rand(
        3, 3, 4, 5, generator=generator
    ) * 2 - 1


def test_critic_loss_of_a_linear_critic_has_the_closed_form() -> None:
    real, fake = _images(seed=0)
    weight = torch.full((3, 4, 5), 0.1)  # ||w|| = 0.1 * sqrt(60)
    critic = LinearCritic(weight)
    loss, stats = WGANGPLoss(gp_weight=10.0).critic_loss(critic, real, fake)

    norm = 0.1 * 60**0.5
    real_score = (real * weight).flatten(1).sum(1).mean() + 0.25
    fake_score = (fake * weight).flatten(1).sum(1).mean() + 0.25
    assert stats["gradient_penalty"].item() == pytest.approx((norm - 1) ** 2, rel=1e-6)
    assert stats["real_score"].item() == pytest.approx(real_score.item(), abs=1e-6)
    assert stats["fake_score"].item() == pytest.approx(fake_score.item(), abs=1e-6)
    assert loss.item() == pytest.approx((fake_score - real_score).item() + 10 * (norm - 1) ** 2, abs=1e-5)

    # The penalty is differentiated (create_graph): d/dw of 10 (||w|| - 1)^2 is 20 (||w|| - 1) w / ||w||.
    loss.backward()
    assert critic.weight.grad is not None
    expected_grad = (fake - real).mean(0) + 20 * (norm - 1) * weight / norm
    assert torch.allclose(critic.weight.grad, expected_grad, atol=1e-6)


def test_gradient_penalty_interpolates_each_sample_with_its_own_eps() -> None:
    real, fake = _images(seed=1)
    _, stats = WGANGPLoss().critic_loss(
        QuadraticCritic(), real, fake, generator=torch.Generator().manual_seed(5)
    )

    eps = torch.rand(3, 1, 1, 1, generator=torch.Generator().manual_seed(5))
    mixed = (1 - eps) * fake + eps * real  # the input gradient of ||x||^2 / 2 is x
    expected = (mixed.flatten(1).norm(dim=1) - 1).pow(2).mean()
    assert stats["gradient_penalty"].item() == pytest.approx(expected.item(), rel=1e-6)
    single_eps = ((0.5 * fake + 0.5 * real).flatten(1).norm(dim=1) - 1).pow(2).mean()
    assert abs(expected.item() - single_eps.item()) > 1e-3  # the check can tell per-sample eps apart


def test_critic_loss_does_not_reach_the_generator() -> None:
    real, fake = _images(seed=2)
    fake.requires_grad_()
    loss, _ = WGANGPLoss().critic_loss(LinearCritic(torch.ones(3, 4, 5)), real, fake)
    loss.backward()
    assert fake.grad is None


def test_generator_loss_is_the_negated_mean_critic_score() -> None:
    _, fake = _images(seed=3)
    fake.requires_grad_()
    weight = torch.full((3, 4, 5), 0.2)
    loss = WGANGPLoss()(LinearCritic(weight), fake)
    assert loss.item() == pytest.approx(-((fake * weight).flatten(1).sum(1).mean() + 0.25).item(), abs=1e-6)
    loss.backward()
    assert fake.grad is not None
    assert torch.allclose(fake.grad, -weight.expand_as(fake) / 3)


def test_rejects_negative_gp_weight() -> None:
    with pytest.raises(ValueError, match="gp_weight"):
        WGANGPLoss(gp_weight=-1.0)
