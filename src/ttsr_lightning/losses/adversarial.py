"""Adversarial loss: WGAN-GP, the official ``AdversarialLoss(GAN_type='WGAN_GP')``."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from ttsr_lightning.losses.context import CRITIC, LossContext

Critic = Callable[[torch.Tensor], torch.Tensor]


class WGANGPLoss(nn.Module):
    """Wasserstein critic and generator objectives with a gradient penalty (Gulrajani et al., 2017).

    Args:
        gp_weight: weight of the gradient penalty in the critic loss (10 in the official code).

    The critic (the discriminator) maps (B, 3, H, W) images in [-1, 1] to raw scores (B, 1).
    ``forward(critic, fake)`` is :meth:`generator_loss`, the term added to the generator objective;
    ``term(context)`` the same with the context's critic and sr. The critic's own steps
    (:meth:`critic_objective`) are the training step's one special case.
    """

    needs: ClassVar[tuple[str, ...]] = (CRITIC,)

    def __init__(self, gp_weight: float = 10.0) -> None:
        super().__init__()
        if gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {gp_weight}")
        self.gp_weight = gp_weight

    def critic_loss(
        self,
        critic: Critic,
        real: torch.Tensor,
        fake: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss to minimise for one critic step; ``fake`` is detached, so only the critic learns.

        real, fake: (B, 3, H, W) in [-1, 1]; ``generator`` draws the interpolation weights.
        ``loss = mean(D(fake)) - mean(D(real)) + gp_weight * mean((||grad D(x_hat)||_2 - 1)^2)`` with
        ``x_hat = (1 - eps) * fake + eps * real``, eps ~ U[0, 1) per sample, and the gradient norm taken
        over all pixels and channels of each sample. Returns ``(loss, stats)``; stats holds detached
        scalars ``real_score``, ``fake_score`` (mean critic scores) and ``gradient_penalty`` (unweighted).
        """
        return self.critic_objective(critic, real, fake, self.mixing_weights(real, generator))

    @staticmethod
    def mixing_weights(real: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The interpolation weights eps ~ U[0, 1) of :meth:`critic_loss`, one per sample: (B, 1, 1, 1)."""
        return torch.rand(real.size(0), 1, 1, 1, generator=generator, device=real.device, dtype=real.dtype)

    def critic_objective(
        self, critic: Critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`critic_loss` with given interpolation weights ``eps`` (B, 1, 1, 1): no random draw
        inside, so a compiled objective draws exactly what the eager one does."""
        real, fake = real.detach(), fake.detach()
        real_score = critic(real).mean()
        fake_score = critic(fake).mean()

        mixed = (fake * (1 - eps) + real * eps).requires_grad_(True)
        # create_graph: the penalty is itself differentiated with respect to the critic's weights.
        (gradient,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
        gradient_penalty = (gradient.flatten(start_dim=1).norm(p=2, dim=1) - 1).pow(2).mean()

        loss = fake_score - real_score + self.gp_weight * gradient_penalty
        stats = {
            "real_score": real_score.detach(),
            "fake_score": fake_score.detach(),
            "gradient_penalty": gradient_penalty.detach(),
        }
        return loss, stats

    def generator_loss(self, critic: Critic, fake: torch.Tensor) -> torch.Tensor:
        """``-mean(D(fake))``; fake (B, 3, H, W) in [-1, 1], gradients flow to the generator."""
        return -critic(fake).mean()

    def forward(self, critic: Critic, fake: torch.Tensor) -> torch.Tensor:
        return self.generator_loss(critic, fake)

    def term(self, context: LossContext) -> torch.Tensor:
        assert context.critic is not None
        return self.generator_loss(context.critic, context.sr)
