"""Every weights file of the suite, read and written in one place.

Three kinds, told apart by their content (never by the file name):

- **run**: a Lightning checkpoint of a training run (``<run>/checkpoints/last.ckpt``): the
  ``TTSRSystem`` state (``generator.*``, ``discriminator.*``, ...), its hyper-parameters (the
  generator's ``_target_`` and arguments under ``hyper_parameters.generator``), optimiser and loop states. The
  frozen weights that are fixed (a loss term's pretrained network, the LPIPS network) or derived (the
  LTE's frozen copy) are left out (:func:`strip_frozen_weights`) and rebuilt on load
  (:func:`restore_frozen_weights`): the module names them in its ``frozen_prefixes``.
- **generator**: the project's generator-only file ``{"format": "ttsr-lightning/generator",
  "version": 2, "generator_config": {...}, "state_dict": {...}}`` (:func:`save_generator`).
- **official**: the official trainer's flat state dict (researchmm/TTSR ``TTSR.pt`` / ``TTSR-rec.pt``):
  keys ``MainNet.*`` and ``LTE.*``, optionally DataParallel's ``module.`` prefix and the frozen
  ``LTE_copy.*``, no configuration. The fixed ImageNet normalisation ``LTE.sub_mean.*`` is a
  buffer-free module here, so it is checked against the ImageNet mean/std and dropped; the
  architecture (``n_feats``, ``num_res_blocks``) is read off the tensors.

Every file is read with ``torch.load(weights_only=True)`` on the CPU (no code runs from a file).
A generator other than TTSR (:mod:`ttsr_lightning.models.interface`) is rebuilt from the ``_target_``
and arguments its run recorded (``generator_config`` of its generator file): the module named there is
imported, and must define an ``nn.Module``. TTSR's checks (architecture arguments, official files)
apply to TTSR only.
A missing, corrupt, truncated or mismatched file raises one :class:`CheckpointError` whose single
line names the file (and the config key that gave it) and what differs.

Entry points use :func:`load_generator` (``evaluate``, ``infer``), :func:`load_generator_weights`
(``init_weights`` of a training run), :func:`check_run_checkpoint` (``ckpt_path`` of a resumed run)
and :func:`convert` (``python -m ttsr_lightning.official convert``). Files are written atomically
(:func:`ttsr_lightning.files.atomic_write`).
"""

from __future__ import annotations

import inspect
import io
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from torch import nn

from ttsr_lightning.errors import CheckpointError, ConfigError
from ttsr_lightning.files import atomic_write
from ttsr_lightning.models import SEARCH_TRANSFERS, TTSRGenerator
from ttsr_lightning.models.interface import architecture
from ttsr_lightning.models.patch_search import RELEVANCE_KERNELS
from ttsr_lightning.models.vgg19 import IMAGENET_MEAN, IMAGENET_STD

GENERATOR_FORMAT = "ttsr-lightning/generator"
GENERATOR_FORMAT_VERSION = 2

OFFICIAL_PREFIXES = {"MainNet.": "main_net.", "LTE.": "lte."}
DATA_PARALLEL_PREFIX = "module."
OFFICIAL_FROZEN_COPY_PREFIX = "LTE_copy."
SUB_MEAN_KEYS = ("LTE.sub_mean.weight", "LTE.sub_mean.bias")

# TTSRSystem state-dict prefix of the generator.
RUN_GENERATOR_PREFIX = "generator."

# Arguments of TTSRGenerator that choose an implementation or an initialisation, not the function:
# never taken from a file.
IMPLEMENTATION_ARGUMENTS = ("vgg_weights", "search_transfer", "batched_extractor", "relevance_kernel")
# Architecture switches younger than some weights files; absent from a file means the default.
ARCHITECTURE_SWITCHES = ("bicubic_residual",)
# Architecture keys renamed since generator files of version 1 (and older run checkpoints).
_RENAMED_KEYS = {"hard_attention": "use_hard_attention", "soft_attention": "use_soft_attention"}
_DROPPED_KEYS = ("search_chunk_size",)

# Residual-block groups present in both the CSFI and the single-path main network, one per entry of
# num_res_blocks (SFE, stage x1, x2, x4).
_BLOCK_GROUPS = ("main_net.SFE.RBs", "main_net.RB11", "main_net.RB22", "main_net.RB33")

KINDS_EXPECTED = (
    "a training run's Lightning checkpoint (.ckpt), the official TTSR.pt / TTSR-rec.pt, or a generator "
    "file from `python -m ttsr_lightning.official convert`"
)


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


class LoadedGenerator(NamedTuple):
    """A generator in eval mode on the CPU, what it was loaded from (one line), and its config: TTSR's
    architecture arguments, or another generator's ``_target_`` and arguments."""

    generator: nn.Module
    description: str
    config: dict[str, Any]


# ------------------------------------------------------------------------------------------ reading
def _source(path: Path, key: str | None) -> str:
    return f"{key}={path}" if key else str(path)


def _torch_load(path: Path, key: str | None) -> object:
    source = _source(path, key)
    if not path.is_file():
        raise CheckpointError(f"{source}: no file there; expected {KINDS_EXPECTED}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{source}: holds Python objects other than tensors and plain values, which are not "
                f"loaded (weights_only); expected {KINDS_EXPECTED}"
            ) from exc
        raise CheckpointError(
            f"{source}: cannot be read as a torch file (not a pickle of tensors); the file is truncated or "
            f"not a checkpoint; expected {KINDS_EXPECTED}"
        ) from exc
    except Exception as exc:  # a damaged file makes the unpickler fail in many ways (EOF, IndexError, ...)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{source}: cannot be read as a torch file ({first_line}); the file is truncated or not "
            f"a checkpoint; expected {KINDS_EXPECTED}"
        ) from exc


def read_generator_weights(path: str | Path, key: str | None = None) -> GeneratorWeights:
    """The generator weights in a file of any kind (see the module docstring); ``key`` names the
    config key that gave the path, for the error messages."""
    path = Path(path)
    source = _source(path, key)
    loaded = _torch_load(path, key)
    if isinstance(loaded, Mapping) and "pytorch-lightning_version" in loaded:
        weights = _run_weights(loaded, path, source)
    elif isinstance(loaded, Mapping) and "format" in loaded:
        weights = _generator_file_weights(loaded, path, source)
    elif isinstance(loaded, Mapping) and _is_official_state_dict(loaded):
        weights = _official_weights(loaded, path, source)
    else:
        top = sorted(map(str, loaded))[:6] if isinstance(loaded, Mapping) else type(loaded).__name__
        raise CheckpointError(
            f"{source}: not a checkpoint this suite knows (top level {top}); expected {KINDS_EXPECTED}"
        )
    check_finite(weights.state_dict, source)
    return weights


def _architecture(config: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A recorded generator config without implementation choices, old key names updated."""
    architecture: dict[str, Any] = {}
    for name, value in config.items():
        if name == "_target_" or name in IMPLEMENTATION_ARGUMENTS or name in _DROPPED_KEYS:
            continue
        architecture[_RENAMED_KEYS.get(name, name)] = value
    parameters = inspect.signature(TTSRGenerator).parameters
    unknown = sorted(set(architecture) - set(parameters))
    if unknown:
        raise CheckpointError(f"{source}: its generator config has unknown argument(s) {unknown}")
    # A switch added after the file was written is at its default there (the paper's network).
    for name in ARCHITECTURE_SWITCHES:
        architecture.setdefault(name, parameters[name].default)
    return architecture


def _is_ttsr(target: object) -> bool:
    return isinstance(target, str) and target.rsplit(".", 1)[-1] == TTSRGenerator.__name__


def _names_a_module_class(target: object) -> bool:
    """Whether a recorded ``_target_`` names an ``nn.Module`` class that can be imported here."""
    try:
        cls = get_class(target) if isinstance(target, str) else None
    except Exception:  # a missing module or name fails in several ways (ImportError, ValueError, ...)
        return False
    return isinstance(cls, type) and issubclass(cls, nn.Module)


def _run_weights(checkpoint: Mapping[str, Any], path: Path, source: str) -> GeneratorWeights:
    hyper_parameters = checkpoint.get("hyper_parameters") or {}
    config = dict(hyper_parameters.get("generator") or {})
    target = config.get("_target_")
    if not _is_ttsr(target) and not _names_a_module_class(target):
        raise CheckpointError(
            f"{source}: a Lightning checkpoint whose hyper_parameters.generator is not a TTSRGenerator "
            f"config (_target_ {target!r}) nor names a generator module that can be imported here; "
            "expected a checkpoint of a TTSRSystem run"
        )
    state_dict = checkpoint.get("state_dict")
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{source}: a Lightning checkpoint without a state_dict")
    generator_state = {
        name.removeprefix(RUN_GENERATOR_PREFIX): value
        for name, value in state_dict.items()
        if name.startswith(RUN_GENERATOR_PREFIX)
    }
    description = (
        f"training-run checkpoint (epoch {checkpoint.get('epoch')}, global step "
        f"{checkpoint.get('global_step')}; generator weights only)"
    )
    recorded = _architecture(config, source) if _is_ttsr(target) else config
    return GeneratorWeights(path, "run", recorded, generator_state, description)


def _generator_file_weights(payload: Mapping[str, Any], path: Path, source: str) -> GeneratorWeights:
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
    if target is None or _is_ttsr(target):  # TTSR's files record its arguments without _target_
        ttsr_config = _architecture(config, source)
        return GeneratorWeights(path, "generator", ttsr_config, dict(state_dict), description)
    if not _names_a_module_class(target):
        raise CheckpointError(
            f"{source}: its generator_config names _target_ {target!r}, not a generator module that can be "
            "imported here"
        )
    return GeneratorWeights(path, "generator", dict(config), dict(state_dict), description)


def _is_official_state_dict(loaded: Mapping[Any, Any]) -> bool:
    return any(
        isinstance(name, str) and name.removeprefix(DATA_PARALLEL_PREFIX).startswith(tuple(OFFICIAL_PREFIXES))
        for name in loaded
    )


def _official_weights(loaded: Mapping[str, Any], path: Path, source: str) -> GeneratorWeights:
    not_tensors = [str(name) for name, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{source}: an official state dict must map names to tensors; not tensors: {not_tensors[:5]}"
        )
    state_dict, notes = official_to_project_state_dict(loaded, source)
    # the official MainNet has no global skip from the bicubic input
    config = {**infer_generator_config(state_dict, source), "bicubic_residual": False}
    description = f"official TTSR state dict ({len(loaded)} tensors)"
    return GeneratorWeights(path, "official", config, state_dict, description, notes)


def check_sub_mean(weight: torch.Tensor, bias: torch.Tensor, source: str = "checkpoint") -> None:
    """Raises unless the official ``MeanShift`` 1x1 conv is the ImageNet normalisation of [0, 1] images."""
    std = torch.tensor(IMAGENET_STD)
    expected_weight = (torch.eye(3) / std.view(3, 1)).view(3, 3, 1, 1)
    expected_bias = -torch.tensor(IMAGENET_MEAN) / std
    if (
        weight.shape != expected_weight.shape
        or bias.shape != expected_bias.shape
        or not torch.allclose(weight.float(), expected_weight, atol=1e-5)
        or not torch.allclose(bias.float(), expected_bias, atol=1e-5)
    ):
        raise CheckpointError(
            f"{source}: LTE.sub_mean is not the ImageNet normalisation (mean {IMAGENET_MEAN}, std "
            f"{IMAGENET_STD}) that this LTE applies; weight {weight.flatten().tolist()}, bias {bias.tolist()}"
        )


def official_to_project_state_dict(
    official_state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """An official state dict under the generator's keys, and notes on what changed.

    Strips ``module.``, drops ``LTE_copy.*``, checks and drops ``LTE.sub_mean.*``, renames
    ``MainNet.`` -> ``main_net.`` and ``LTE.`` -> ``lte.``. Other keys stay as they are, so that
    loading reports them as unknown.
    """
    prefixed = sum(name.startswith(DATA_PARALLEL_PREFIX) for name in official_state_dict)
    state_dict = {
        name.removeprefix(DATA_PARALLEL_PREFIX): value for name, value in official_state_dict.items()
    }
    notes = [f"read {len(state_dict)} tensors"]
    if prefixed:
        notes.append(f"stripped '{DATA_PARALLEL_PREFIX}' from {prefixed} keys")
    if all(name in state_dict for name in SUB_MEAN_KEYS):
        check_sub_mean(state_dict[SUB_MEAN_KEYS[0]], state_dict[SUB_MEAN_KEYS[1]], source)
        notes.append(
            "checked LTE.sub_mean against the ImageNet normalisation, dropped it (the LTE applies it)"
        )
    copies = sum(name.startswith(OFFICIAL_FROZEN_COPY_PREFIX) for name in state_dict)
    if copies:
        notes.append(
            f"dropped {copies} {OFFICIAL_FROZEN_COPY_PREFIX}* tensors "
            "(the frozen copy, rebuilt during training)"
        )
    project_state_dict = {}
    for name, value in state_dict.items():
        if name.startswith(OFFICIAL_FROZEN_COPY_PREFIX) or name in SUB_MEAN_KEYS:
            continue
        for official_prefix, project_prefix in OFFICIAL_PREFIXES.items():
            if name.startswith(official_prefix):
                name = project_prefix + name.removeprefix(official_prefix)
                break
        project_state_dict[name] = value
    notes.append("renamed MainNet.* -> main_net.*, LTE.* -> lte.*")
    return project_state_dict, notes


def project_to_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse renaming (``main_net.`` -> ``MainNet.``, ``lte.`` -> ``LTE.``) plus the official
    ``LTE.sub_mean`` ImageNet normalisation: the file the official code loads."""
    to_official = {project: official for official, project in OFFICIAL_PREFIXES.items()}
    official = {}
    for name, value in state_dict.items():
        prefix = next((p for p in to_official if name.startswith(p)), None)
        if prefix is None:
            raise CheckpointError(f"{name}: not a generator key (expected main_net.* or lte.*)")
        official[to_official[prefix] + name.removeprefix(prefix)] = value
    std = torch.tensor(IMAGENET_STD)
    official[SUB_MEAN_KEYS[0]] = (torch.eye(3) / std.view(3, 1)).view(3, 3, 1, 1)
    official[SUB_MEAN_KEYS[1]] = -torch.tensor(IMAGENET_MEAN) / std
    return official


def infer_generator_config(
    state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> dict[str, Any]:
    """``n_feats`` and ``num_res_blocks`` of a generator state dict (project keys), read off the tensors."""
    head_key = "main_net.SFE.conv_head.weight"
    if head_key not in state_dict:
        raise CheckpointError(f"{source}: has no {head_key}, so it is not a TTSR generator's state dict")
    num_res_blocks = []
    for group in _BLOCK_GROUPS:
        pattern = re.compile(re.escape(group) + r"\.(\d+)\.")
        indices = [int(match.group(1)) for name in state_dict if (match := pattern.match(name))]
        num_res_blocks.append(max(indices, default=-1) + 1)
    return {"n_feats": int(state_dict[head_key].shape[0]), "num_res_blocks": num_res_blocks}


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


# ------------------------------------------------------------------------------------------ loading
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
    source = _source(weights.path, key)
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
    source = _source(weights.path, key)
    target = weights.config.get("_target_", TTSRGenerator.__name__)
    held = str(target).rsplit(".", 1)[-1]
    if held != type(generator).__name__:
        raise CheckpointError(f"{source}: holds a {held}, this run trains a {type(generator).__name__}")
    config = architecture(generator)
    differing = [
        f"{name}={weights.config[name]!r} (this run: {config[name]!r})"
        for name in weights.config
        if name in config and _normalise(weights.config[name]) != _normalise(config[name])
    ]
    if differing:
        raise CheckpointError(f"{source}: its generator differs from this run's: {', '.join(differing)}")
    load_state_dict_checked(generator, weights.state_dict, source)
    return weights


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, list | tuple) else value


# ------------------------------------------------------------------------------------------ writing
def save_generator(generator: nn.Module, path: str | Path, config: Mapping[str, Any] | None = None) -> None:
    """Writes the project's generator file: format, version, the generator's config, state dict on the
    CPU. ``config``: TTSR's ``generator.config`` by default; another generator's ``_target_`` and
    arguments (what :func:`build_generator` rebuilds it from)."""
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


def save_torch_file(payload: Any, path: str | Path) -> None:
    """``torch.save(payload, path)``, atomically (:func:`ttsr_lightning.files.atomic_write`). Serialised
    in memory first: a full disk is then an OSError naming ``path``, not an error of torch's zip writer."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda file: file.write(buffer.getbuffer()))


def convert(input_path: str | Path, output_path: str | Path) -> tuple[GeneratorWeights, nn.Module]:
    """Any weights file -> the project's generator file; returns what was read and the generator."""
    weights = read_generator_weights(input_path)
    generator = build_generator(weights)
    save_generator(generator, output_path, None if isinstance(generator, TTSRGenerator) else weights.config)
    return weights, generator


# ------------------------------------------------------------------------------ run checkpoints
def frozen_prefixes(module: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the weights ``module`` rebuilds itself (its ``frozen_prefixes``: fixed
    pretrained networks, derived copies), which a run checkpoint leaves out; none when it names none."""
    return tuple(getattr(module, "frozen_prefixes", ()))


def strip_frozen_weights(checkpoint: dict[str, Any], prefixes: tuple[str, ...]) -> None:
    """Leaves the frozen weights (state-dict names starting with one of ``prefixes``) out of a run
    checkpoint about to be written, and refuses to write one holding NaN or infinity."""
    state_dict = checkpoint["state_dict"]
    for name in [name for name in state_dict if name.startswith(prefixes)]:
        del state_dict[name]
    check_finite(state_dict, "run checkpoint about to be written")


def restore_frozen_weights(checkpoint: dict[str, Any], module: nn.Module) -> None:
    """Puts the module's own frozen weights (:func:`frozen_prefixes`) back into a run checkpoint being
    loaded."""
    state_dict = checkpoint["state_dict"]
    prefixes = frozen_prefixes(module)
    for name, value in module.state_dict().items():
        if name.startswith(prefixes):
            state_dict.setdefault(name, value)


def run_checkpoint_problem(path: Path, module: nn.Module) -> str | None:
    """Why a training run of ``module`` cannot resume from ``path`` (None when it can): missing, empty,
    unreadable, not a run checkpoint, another architecture, or weights holding NaN / infinity."""
    if not path.is_file():
        return "no file there"
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes): its write was cut off"
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            return None  # objects of other callbacks: readable, left to Lightning
        return "cannot be read as a torch file: it is truncated or damaged"
    except Exception as exc:  # a damaged file makes the reader fail in many ways (EOF, zip, ...)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"cannot be read as a torch file ({first_line}): it is truncated or damaged"
    if not isinstance(loaded, Mapping) or "pytorch-lightning_version" not in loaded:
        if isinstance(loaded, Mapping) and ("format" in loaded or _is_official_state_dict(loaded)):
            return (
                "holds generator weights only, not a training run's state; start a new run from them "
                "with init_weights= instead"
            )
        top = sorted(map(str, loaded))[:6] if isinstance(loaded, Mapping) else type(loaded).__name__
        return f"not a Lightning checkpoint of a training run (top level {top})"
    state_dict = loaded.get("state_dict")
    if not isinstance(state_dict, Mapping):
        return "a Lightning checkpoint without a state_dict"
    hyper_parameters = getattr(module, "hparams", {})
    differing = [
        f"{group}.{name}={value!r} (this run: {hyper_parameters[group].get(name)!r})"
        for group in ("generator", "discriminator")
        if isinstance(hyper_parameters.get(group), Mapping)
        and isinstance((loaded.get("hyper_parameters") or {}).get(group), Mapping)
        for name, value in _renamed(loaded["hyper_parameters"][group]).items()
        if name not in IMPLEMENTATION_ARGUMENTS
        and _normalise(value) != _normalise(hyper_parameters[group].get(name))
    ]
    if differing:
        return f"its model differs from this run's: {', '.join(differing)}"
    frozen = frozen_prefixes(module)
    expected = {n: v for n, v in module.state_dict().items() if not n.startswith(frozen)}
    stored = {n: v for n, v in state_dict.items() if not n.startswith(frozen)}
    unfit = sorted(set(expected) ^ set(stored)) + [
        name for name in expected if name in stored and stored[name].shape != expected[name].shape
    ]
    if unfit:
        return f"its weights do not fit this run's model ({len(unfit)} keys differ, e.g. {unfit[0]})"
    non_finite = non_finite_tensors(stored)
    if non_finite:  # training refuses to write such a file, so the file itself is damaged
        return f"the file is damaged: {non_finite}; no run of this suite writes such weights"
    return None


def _renamed(config: Mapping[str, Any]) -> dict[str, Any]:
    return {_RENAMED_KEYS.get(k, k): v for k, v in config.items() if k not in _DROPPED_KEYS}


def loadable_run_checkpoints(folder: Path, module: nn.Module, exclude: Path | None = None) -> list[Path]:
    """The checkpoints in ``folder`` (newest first) that ``module``'s run can resume from."""
    candidates = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [
        path
        for path in candidates
        if (exclude is None or path.resolve() != exclude.resolve())
        and run_checkpoint_problem(path, module) is None
    ]


def check_run_checkpoint(path: str | Path, module: nn.Module, key: str = "ckpt_path") -> None:
    """Refuses, in one line, a checkpoint that a run of ``module`` cannot resume from: the line names
    the file, what is wrong with it, and the loadable checkpoints of its folder, if any."""
    path = Path(path)
    problem = run_checkpoint_problem(path, module)
    if problem is None:
        return
    others = loadable_run_checkpoints(path.parent, module, exclude=path) if path.parent.is_dir() else []
    hint = (
        f"; loadable in {path.parent}: {', '.join(str(other) for other in others)}"
        if others
        else f"; no other loadable checkpoint in {path.parent}"
    )
    raise CheckpointError(f"{key}={path}: {problem}{hint}")
