"""A training run's Lightning checkpoint (``<run>/checkpoints/last.ckpt``, the best ones).

It holds the ``TTSRSystem`` state (``generator.*``, ``discriminator.*``, ...), its hyper-parameters (the
generator's ``_target_`` and arguments under ``hyper_parameters.generator``), optimiser and loop states.
The frozen weights that are fixed (a loss term's pretrained network, the LPIPS network) or derived (the
LTE's frozen copy) are left out (:func:`strip_frozen_weights`) and rebuilt on load
(:func:`restore_frozen_weights`): the module names them in its ``frozen_prefixes``. A resume's
``ckpt_path`` is checked first (:func:`check_run_checkpoint`); Lightning writes the file through
:class:`ttsr_lightning.callbacks.checkpoint_io.AtomicCheckpointIO`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ttsr_lightning.checkpoints.generator_file import is_generator_file
from ttsr_lightning.checkpoints.official_weights import is_official_state_dict
from ttsr_lightning.checkpoints.torch_file import ForeignObjects, UnreadableFile, load_torch_file, top_level
from ttsr_lightning.checkpoints.weights import (
    IMPLEMENTATION_ARGUMENTS,
    GeneratorWeights,
    check_finite,
    comparable,
    is_ttsr,
    names_a_module_class,
    non_finite_tensors,
    recorded_architecture,
    renamed,
)
from ttsr_lightning.errors import CheckpointError

# TTSRSystem state-dict prefix of the generator.
RUN_GENERATOR_PREFIX = "generator."


def is_run_checkpoint(loaded: Mapping[Any, Any]) -> bool:
    """Whether a file's top level is a Lightning checkpoint."""
    return "pytorch-lightning_version" in loaded


def run_weights(checkpoint: Mapping[str, Any], path: Path, source: str) -> GeneratorWeights:
    """The generator weights of a run checkpoint (``checkpoint``, read from ``path``)."""
    hyper_parameters = checkpoint.get("hyper_parameters") or {}
    config = dict(hyper_parameters.get("generator") or {})
    target = config.get("_target_")
    if not is_ttsr(target) and not names_a_module_class(target):
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
    recorded = recorded_architecture(config, source) if is_ttsr(target) else config
    return GeneratorWeights(path, "run", recorded, generator_state, description)


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
    try:
        loaded = load_torch_file(path, str(path), mmap=True)
    except ForeignObjects:
        return None  # objects of other callbacks: readable, left to Lightning
    except UnreadableFile as exc:
        return exc.problem
    if not isinstance(loaded, Mapping) or not is_run_checkpoint(loaded):
        if isinstance(loaded, Mapping) and (is_generator_file(loaded) or is_official_state_dict(loaded)):
            return (
                "holds generator weights only, not a training run's state; start a new run from them "
                "with init_weights= instead"
            )
        return f"not a Lightning checkpoint of a training run (top level {top_level(loaded)})"
    state_dict = loaded.get("state_dict")
    if not isinstance(state_dict, Mapping):
        return "a Lightning checkpoint without a state_dict"
    hyper_parameters = getattr(module, "hparams", {})
    differing = [
        f"{group}.{name}={value!r} (this run: {hyper_parameters[group].get(name)!r})"
        for group in ("generator", "discriminator")
        if isinstance(hyper_parameters.get(group), Mapping)
        and isinstance((loaded.get("hyper_parameters") or {}).get(group), Mapping)
        for name, value in renamed(loaded["hyper_parameters"][group]).items()
        if name not in IMPLEMENTATION_ARGUMENTS
        and comparable(value) != comparable(hyper_parameters[group].get(name))
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
