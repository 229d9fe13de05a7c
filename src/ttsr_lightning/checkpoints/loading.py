"""The generator in a weights file of any kind: read, rebuilt, loaded into a module, converted.

Three kinds, told apart by their content (never by the file name), each owned by its module:
a training run's Lightning checkpoint (:mod:`~ttsr_lightning.checkpoints.run_checkpoint`), the suite's
generator file (:mod:`~ttsr_lightning.checkpoints.generator_file`) and the official ``TTSR.pt`` /
``TTSR-rec.pt`` (:mod:`~ttsr_lightning.checkpoints.official_weights`). Every file is opened by
:func:`~ttsr_lightning.checkpoints.torch_file.load_torch_file`.

A generator other than TTSR (:mod:`ttsr_lightning.models.interface`) is rebuilt from the ``_target_``
and arguments its run recorded (``generator_config`` of its generator file): the module named there is
imported, and must define an ``nn.Module``. TTSR's checks (architecture arguments, official files)
apply to TTSR only. A missing, corrupt, truncated or mismatched file raises one
:class:`~ttsr_lightning.errors.CheckpointError` whose single line names the file (and the config key
that gave it) and what differs.

Entry points use :func:`load_generator` (``evaluate``, ``infer``), :func:`load_generator_weights`
(``init_weights`` of a training run) and :func:`convert` (``python -m ttsr_lightning.official convert``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from ttsr_lightning.checkpoints.generator_file import (
    generator_file_weights,
    is_generator_file,
    save_generator,
)
from ttsr_lightning.checkpoints.official_weights import is_official_state_dict, official_weights
from ttsr_lightning.checkpoints.run_checkpoint import is_run_checkpoint, run_weights
from ttsr_lightning.checkpoints.torch_file import KINDS_EXPECTED, load_torch_file, source_name, top_level
from ttsr_lightning.checkpoints.weights import (
    GeneratorWeights,
    check_finite,
    comparable,
    load_state_dict_checked,
)
from ttsr_lightning.errors import CheckpointError, ConfigError
from ttsr_lightning.models import SEARCH_TRANSFERS, TTSRGenerator
from ttsr_lightning.models.interface import architecture
from ttsr_lightning.models.patch_search import RELEVANCE_KERNELS


class LoadedGenerator(NamedTuple):
    """A generator in eval mode on the CPU, what it was loaded from (one line), and its config: TTSR's
    architecture arguments, or another generator's ``_target_`` and arguments."""

    generator: nn.Module
    description: str
    config: dict[str, Any]


def read_generator_weights(path: str | Path, key: str | None = None) -> GeneratorWeights:
    """The generator weights in a file of any kind (see the module docstring); ``key`` names the
    config key that gave the path, for the error messages."""
    path = Path(path)
    source = source_name(path, key)
    loaded = load_torch_file(path, source)
    if isinstance(loaded, Mapping) and is_run_checkpoint(loaded):
        weights = run_weights(loaded, path, source)
    elif isinstance(loaded, Mapping) and is_generator_file(loaded):
        weights = generator_file_weights(loaded, path, source)
    elif isinstance(loaded, Mapping) and is_official_state_dict(loaded):
        weights = official_weights(loaded, path, source)
    else:
        raise CheckpointError(
            f"{source}: not a checkpoint this suite knows (top level {top_level(loaded)}); "
            f"expected {KINDS_EXPECTED}"
        )
    check_finite(weights.state_dict, source)
    return weights


def build_generator(
    weights: GeneratorWeights,
    search_transfer: str = "lean",
    key: str | None = None,
    relevance_kernel: str = "torch",
) -> nn.Module:
    """A generator (eval mode, CPU) with the file's architecture and weights; ``search_transfer`` and
    ``relevance_kernel`` choose TTSR's implementation (never taken from the file). No VGG19 file is
    looked for: every LTE weight comes from the file. Another generator is built by its recorded
    ``_target_`` and arguments."""
    source = source_name(weights.path, key)
    generator: nn.Module
    try:
        if "_target_" in weights.config:
            generator = instantiate(weights.config, _convert_="all")
        else:
            generator = TTSRGenerator(
                **weights.config,
                vgg_weights="random",
                search_transfer=search_transfer,
                relevance_kernel=relevance_kernel,
            )
    except (TypeError, ValueError, InstantiationException) as exc:  # a constructor's refusal
        cause = exc.__cause__ if isinstance(exc, InstantiationException) and exc.__cause__ else exc
        raise CheckpointError(
            f"{source}: its generator config {weights.config} cannot be built ({cause})"
        ) from exc
    load_state_dict_checked(generator, weights.state_dict, source)
    return generator.eval()


def load_generator(
    path: str | Path, search_transfer: str = "lean", key: str | None = "ckpt", relevance_kernel: str = "torch"
) -> LoadedGenerator:
    """The generator held by a file of any kind, in eval mode on the CPU (``evaluate``, ``infer``), with
    the search-transfer implementation and relevance kernel asked for (settings of those commands)."""
    if search_transfer not in SEARCH_TRANSFERS:
        raise ConfigError(
            f"search_transfer: expected one of {sorted(SEARCH_TRANSFERS)}, got {search_transfer!r}"
        )
    if relevance_kernel not in RELEVANCE_KERNELS:
        raise ConfigError(
            f"relevance_kernel: expected one of {list(RELEVANCE_KERNELS)}, got {relevance_kernel!r}"
        )
    weights = read_generator_weights(path, key)
    generator = build_generator(weights, search_transfer, key, relevance_kernel)
    if not isinstance(generator, TTSRGenerator):
        config = ", ".join(f"{name}={value}" for name, value in weights.config.items())
        return LoadedGenerator(generator, f"{weights.description}; {config}", dict(weights.config))
    config = ", ".join(f"{name}={value}" for name, value in generator.config.items())
    implementation = f"search_transfer={search_transfer}; relevance_kernel={relevance_kernel}"
    description = f"{weights.description}; {config}; {implementation}"
    return LoadedGenerator(generator, description, generator.config)


def load_generator_weights(
    generator: nn.Module, path: str | Path, key: str | None = "init_weights"
) -> GeneratorWeights:
    """Copies a file's generator weights (any kind) into ``generator`` (a run's ``init_weights``).

    The file's generator must be of the generator's class and architecture: a recorded config that
    differs names the differing arguments; otherwise unknown, missing or mis-shaped keys are listed.
    """
    weights = read_generator_weights(path, key)
    source = source_name(weights.path, key)
    target = weights.config.get("_target_", TTSRGenerator.__name__)
    held = str(target).rsplit(".", 1)[-1]
    if held != type(generator).__name__:
        raise CheckpointError(f"{source}: holds a {held}, this run trains a {type(generator).__name__}")
    config = architecture(generator)
    differing = [
        f"{name}={weights.config[name]!r} (this run: {config[name]!r})"
        for name in weights.config
        if name in config and comparable(weights.config[name]) != comparable(config[name])
    ]
    if differing:
        raise CheckpointError(f"{source}: its generator differs from this run's: {', '.join(differing)}")
    load_state_dict_checked(generator, weights.state_dict, source)
    return weights


def convert(input_path: str | Path, output_path: str | Path) -> tuple[GeneratorWeights, nn.Module]:
    """Any weights file -> the project's generator file; returns what was read and the generator."""
    weights = read_generator_weights(input_path)
    generator = build_generator(weights)
    save_generator(generator, output_path, None if isinstance(generator, TTSRGenerator) else weights.config)
    return weights, generator
