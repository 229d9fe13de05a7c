"""What every kind of weights file is read into (:class:`GeneratorWeights`), and the checks the kinds
share: a recorded generator config brought up to date, weights that are finite, a state dict that fits
a module."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from torch import nn

from ttsr_lightning.errors import CheckpointError
from ttsr_lightning.models import TTSRGenerator

# Arguments of TTSRGenerator that choose an implementation or an initialisation, not the function:
# never taken from a file.
IMPLEMENTATION_ARGUMENTS = ("vgg_weights", "search_transfer", "batched_extractor", "relevance_kernel")
# Architecture switches younger than some weights files; absent from a file means the default.
ARCHITECTURE_SWITCHES = ("bicubic_residual",)
# Architecture keys renamed since generator files of version 1 (and older run checkpoints).
_RENAMED_KEYS = {"hard_attention": "use_hard_attention", "soft_attention": "use_soft_attention"}
_DROPPED_KEYS = ("search_chunk_size",)


@dataclass
class GeneratorWeights:
    """A generator's weights as read from a file.

    kind: ``"run"``, ``"generator"`` or ``"official"``. config: the architecture arguments of
    :class:`TTSRGenerator` (read from the file, or off the tensors for an official file), or for
    another generator its whole recorded config, ``_target_`` included. state_dict: the generator's
    keys (TTSR: ``lte.*`` / ``main_net.*``). description: one line for logs and result files.
    notes: what reading changed (stripped prefixes, dropped frozen copies), for the convert command.
    """

    path: Path
    kind: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    description: str
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ recorded configs
def renamed(config: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded generator config under today's key names (keys since dropped left out)."""
    return {_RENAMED_KEYS.get(k, k): v for k, v in config.items() if k not in _DROPPED_KEYS}


def recorded_architecture(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A recorded TTSR generator config without implementation choices, old key names updated."""
    architecture = {
        name: value
        for name, value in renamed(config).items()
        if name != "_target_" and name not in IMPLEMENTATION_ARGUMENTS
    }
    parameters = inspect.signature(TTSRGenerator).parameters
    unknown = sorted(set(architecture) - set(parameters))
    if unknown:
        raise CheckpointError(f"{source}: its generator config has unknown argument(s) {unknown}")
    # A switch added after the file was written is at its default there (the paper's network).
    for name in ARCHITECTURE_SWITCHES:
        architecture.setdefault(name, parameters[name].default)
    return architecture


def is_ttsr(target: object) -> bool:
    """Whether a recorded ``_target_`` names TTSR's generator."""
    return isinstance(target, str) and target.rsplit(".", 1)[-1] == TTSRGenerator.__name__


def names_a_module_class(target: object) -> bool:
    """Whether a recorded ``_target_`` names an ``nn.Module`` class that can be imported here."""
    try:
        cls = get_class(target) if isinstance(target, str) else None
    except Exception:  # a missing module or name fails in several ways (ImportError, ValueError, ...)
        return False
    return isinstance(cls, type) and issubclass(cls, nn.Module)


def comparable(value: Any) -> Any:
    """A config value as compared with another (a tuple and a list of the same items are equal)."""
    return list(value) if isinstance(value, list | tuple) else value


# ------------------------------------------------------------------------------------- weights
def non_finite_tensors(state_dict: Mapping[str, Any]) -> str | None:
    """``"N tensor(s) hold NaN or infinity (names)"`` for a state dict with such tensors, else None."""
    bad = [
        name
        for name, value in state_dict.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]
    if not bad:
        return None
    names = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
    return f"{len(bad)} tensor(s) hold NaN or infinity ({names})"


def check_finite(state_dict: Mapping[str, Any], source: str) -> None:
    """CheckpointError naming the first tensors holding NaN or infinity."""
    problem = non_finite_tensors(state_dict)
    if problem:
        raise CheckpointError(f"{source}: {problem}; a diverged run, not usable weights")


def load_state_dict_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict`` reporting every unknown, missing and mis-shaped key in one line."""
    expected = module.state_dict()
    unknown = sorted(set(state_dict) - set(expected))
    missing = sorted(set(expected) - set(state_dict))
    mis_shaped = [
        f"{name} {tuple(state_dict[name].shape)} (expected {tuple(expected[name].shape)})"
        for name in expected
        if name in state_dict and state_dict[name].shape != expected[name].shape
    ]
    if unknown or missing or mis_shaped:
        problems = {"unknown keys": unknown, "missing keys": missing, "mis-shaped keys": mis_shaped}
        details = "; ".join(
            f"{len(names)} {kind}: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}"
            for kind, names in problems.items()
            if names
        )
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: {details}")
    module.load_state_dict(state_dict)
