"""What every generator-side loss term receives: one :class:`LossContext` per training step.

A loss term is an ``nn.Module`` with ``term(context) -> scalar`` and, optionally, ``needs``: the names
of the optional pieces of the context it reads (``"texture_extractor"``, ``"critic"``), and
``frozen_weights = True`` when its weights never train and are rebuilt from its config (a fixed
pretrained network, as the perceptual loss's VGG19): run checkpoints then leave them out. The training
step builds only what some enabled term needs, and refuses a term whose need the generator cannot meet.
Its weight and its phase are configuration, not part of the class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from ttsr_lightning.models.generator import GeneratorOutput

# the optional pieces of a LossContext a term may need
TEXTURE_EXTRACTOR = "texture_extractor"
CRITIC = "critic"
NEEDS = (TEXTURE_EXTRACTOR, CRITIC)


@dataclass(frozen=True)
class LossContext:
    """One training step's generator output and the pieces its loss terms may read.

    sr, hr: (B, 3, H, W) in [-1, 1]; ``output``: the generator's :class:`GeneratorOutput` (sr included);
    ``texture_extractor``: a frozen copy of the generator's current texture extractor (TTSR's LTE),
    image -> (lv1, lv2, lv3) features; ``critic``: the WGAN-GP critic, (B, 3, H, W) -> (B, 1) scores,
    frozen during the generator's step. Each is None unless an enabled term needs it.
    """

    sr: Tensor
    hr: Tensor
    output: GeneratorOutput
    texture_extractor: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]] | None = None
    critic: Callable[[Tensor], Tensor] | None = None


class LossTerm(Protocol):
    """The interface of a generator-side loss term (see the module docstring)."""

    def term(self, context: LossContext) -> Tensor: ...


def needs_of(term: object) -> tuple[str, ...]:
    """The optional context pieces ``term`` reads (its ``needs``; none when it declares none)."""
    return tuple(getattr(term, "needs", ()))


def has_frozen_weights(term: object) -> bool:
    """Whether ``term`` declares its weights fixed and rebuilt from its config (``frozen_weights``)."""
    return bool(getattr(term, "frozen_weights", False))
