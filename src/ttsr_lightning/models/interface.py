"""What the suite asks of a generator, so that another one plugs in with no edit to the code.

A generator is an ``nn.Module`` built by its Hydra ``_target_`` from plain constructor arguments
(``model.generator``), whose forward is

    forward(lr, lr_up, ref, ref_down_up) -> GeneratorOutput

lr: (B, 3, h, w) in [-1, 1]; lr_up: (B, 3, 4h, 4w) in [-1, 1], bicubic x4 of lr; ref and ref_down_up:
(B, 3, H, W) in [-1, 1] (H, W multiples of 4), or sequences of such tensors (one per reference). The
output's ``sr`` (B, 3, 4h, 4w) in [-1, 1] is all that training with the reconstruction, perceptual and
adversarial terms, evaluation and inference need; the other fields may be None.

Everything else is optional, read through the functions below, each with a default for a generator
that does not define the attribute:

- ``parameter_groups()``: ``{name: parameters}``, each group optimised with the optimiser's options and
  its own from ``optim.generator.param_groups.<name>`` (TTSR: ``generator`` and ``lte``; a declared group
  may be empty). Default: every trainable parameter in one group ``generator``.
- ``texture_extractor``: the module whose features of ``sr`` the transferal perceptual loss compares
  with the transferred textures ``t_lv3``, ``t_lv2``, ``t_lv1`` (TTSR: its LTE). Default: None, and
  that loss term must be off.
- ``config``: the architecture arguments as plain values, recorded beside the results. Default: {}.

Checkpoints rebuild a generator from its recorded ``_target_`` and arguments, so its state dict
must be all it needs besides them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from ttsr_lightning.models.generator import GeneratorOutput


@runtime_checkable
class Generator(Protocol):
    """The one method every generator has (see the module docstring)."""

    def forward(
        self,
        lr: torch.Tensor,
        lr_up: torch.Tensor,
        ref: torch.Tensor | Sequence[torch.Tensor],
        ref_down_up: torch.Tensor | Sequence[torch.Tensor],
    ) -> GeneratorOutput: ...


def parameter_groups(generator: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The generator's trainable parameters by optimiser group, in the generator's order."""
    groups = getattr(generator, "parameter_groups", None)
    if callable(groups):
        return {name: list(parameters) for name, parameters in groups().items()}
    return {"generator": [p for p in generator.parameters() if p.requires_grad]}


def texture_extractor(generator: nn.Module) -> nn.Module | None:
    """The module whose features the transferal perceptual loss compares, or None."""
    extractor = getattr(generator, "texture_extractor", None)
    return extractor if isinstance(extractor, nn.Module) else None


def architecture(generator: nn.Module) -> dict[str, Any]:
    """The generator's architecture arguments (plain values), or {} when it records none."""
    config = getattr(generator, "config", None)
    return dict(config) if isinstance(config, dict) else {}
