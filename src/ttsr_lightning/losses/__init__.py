"""TTSR's training objectives (rec, per, tpl, adv), one per file; pure ``nn.Module``s, each called by
the training step as ``term(LossContext)`` (:mod:`ttsr_lightning.losses.context`)."""

from ttsr_lightning.losses.adversarial import WGANGPLoss
from ttsr_lightning.losses.context import LossContext, LossTerm
from ttsr_lightning.losses.perceptual import PerceptualLoss
from ttsr_lightning.losses.reconstruction import ReconstructionLoss
from ttsr_lightning.losses.transferal_perceptual import TransferalPerceptualLoss

__all__ = [
    "LossContext",
    "LossTerm",
    "PerceptualLoss",
    "ReconstructionLoss",
    "TransferalPerceptualLoss",
    "WGANGPLoss",
]
