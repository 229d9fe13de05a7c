"""The suite's generator-only weights file: ``{"format": "ttsr-lightning/generator", "version": 2,
"generator_config": {...}, "state_dict": {...}}`` (version 1 files, with the old flag names, still load).

TTSR's file records its architecture arguments without ``_target_``; another generator's records its
``_target_`` and arguments, from which it is rebuilt.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ttsr_lightning.checkpoints.torch_file import KINDS_EXPECTED, save_torch_file
from ttsr_lightning.checkpoints.weights import (
    GeneratorWeights,
    check_finite,
    is_ttsr,
    names_a_module_class,
    recorded_architecture,
)
from ttsr_lightning.errors import CheckpointError
from ttsr_lightning.models import TTSRGenerator

GENERATOR_FORMAT = "ttsr-lightning/generator"
GENERATOR_FORMAT_VERSION = 2


def is_generator_file(loaded: Mapping[Any, Any]) -> bool:
    """Whether a file's top level is a generator file (of this version or another)."""
    return "format" in loaded


def generator_file_weights(payload: Mapping[str, Any], path: Path, source: str) -> GeneratorWeights:
    """The generator weights of a generator file (``payload``, read from ``path``)."""
    if payload.get("format") != GENERATOR_FORMAT:
        raise CheckpointError(
            f"{source}: format {payload.get('format')!r} is not {GENERATOR_FORMAT!r}; "
            f"expected {KINDS_EXPECTED}"
        )
    version = payload.get("version")
    if version not in (1, GENERATOR_FORMAT_VERSION):
        raise CheckpointError(
            f"{source}: {GENERATOR_FORMAT} version {version} is not supported (this code reads versions "
            f"1 and {GENERATOR_FORMAT_VERSION}); update ttsr-lightning"
        )
    state_dict = payload.get("state_dict")
    config = payload.get("generator_config")
    if not isinstance(state_dict, Mapping) or not isinstance(config, Mapping):
        raise CheckpointError(f"{source}: a {GENERATOR_FORMAT} file needs generator_config and state_dict")
    description = f"generator file ({GENERATOR_FORMAT} v{version})"
    target = config.get("_target_")
    if target is None or is_ttsr(target):  # TTSR's files record its arguments without _target_
        ttsr_config = recorded_architecture(config, source)
        return GeneratorWeights(path, "generator", ttsr_config, dict(state_dict), description)
    if not names_a_module_class(target):
        raise CheckpointError(
            f"{source}: its generator_config names _target_ {target!r}, not a generator module that can be "
            "imported here"
        )
    return GeneratorWeights(path, "generator", dict(config), dict(state_dict), description)


def save_generator(generator: nn.Module, path: str | Path, config: Mapping[str, Any] | None = None) -> None:
    """Writes the project's generator file: format, version, the generator's config, state dict on the
    CPU. ``config``: TTSR's ``generator.config`` by default; another generator's ``_target_`` and
    arguments (what :func:`ttsr_lightning.checkpoints.loading.build_generator` rebuilds it from)."""
    if config is None and not isinstance(generator, TTSRGenerator):
        raise CheckpointError(
            f"generator to be written to {path}: a {type(generator).__name__} needs its config "
            "(_target_ and arguments) to be written"
        )
    check_finite(generator.state_dict(), f"generator to be written to {path}")
    payload = {
        "format": GENERATOR_FORMAT,
        "version": GENERATOR_FORMAT_VERSION,
        "generator_config": dict(config) if config is not None else generator.config,
        "state_dict": {name: value.detach().cpu() for name, value in generator.state_dict().items()},
    }
    save_torch_file(payload, path)
