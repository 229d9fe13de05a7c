"""Config validation: what no schema says and no constructor refuses, refused at start-up.

Types and keys are the schemas' (config_schema.py: the suite's own groups refuse a wrong type or an
unknown key as the config composes); the classes a config builds refuse their own values (Lightning's
Trainer its ``max_epochs``, ``max_steps`` and ``limit_*_batches``; torch's optimisers their learning
rates and betas; the DataModules their batch sizes), reported naming the key (cli.py). What is left is
here, so the LightningModule keeps only the training policy and the entry points stay thin. Each check
raises :class:`ConfigError` naming the config key and what was expected.

- :class:`OptimSettings`: the ``optim`` group (each network's optimiser and scheduler, the warm-up, the
  critic steps, the non-finite policy), as a frozen dataclass, typed by its schema; its ranges;
- :class:`LossTermSettings` / :func:`loss_terms`: the ``loss`` group, ``loss.terms.<name>``: each term's
  weight (>= 0), phase and module config, typed by the schema's LossTermConfig; a term is on iff its
  weight is > 0;
- :func:`check_run_config`: the whole config of a training run, before any data or model is built: the
  ``seed``'s range, the typed groups once more (:func:`check_typed_groups`: a key Hydra's ``+`` added
  to one), the trainer's counts that Lightning does not check when it builds the Trainer
  (:data:`TRAINER_MINIMUMS`), ``ckpt_path`` and ``init_weights`` (files that exist), and
  ``trainer.max_epochs`` against the warm-up.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ttsr_lightning.config_paths import packaged_option
from ttsr_lightning.config_schema import (
    DataConfig,
    DiscriminatorConfig,
    GeneratorConfig,
    LossConfig,
    LossTermConfig,
    OptimConfig,
    PathsConfig,
    SystemConfig,
)
from ttsr_lightning.errors import ConfigError

# the keys of a loss term's config that are policy (the training step's), not constructor arguments
TERM_POLICY_KEYS = ("weight", "after_warmup")
# the groups typed by a schema besides optim and loss (config_schema.py); a `_target_` node whose target
# is another class than its schema's (a generator of one's own) is that class's config
TYPED_GROUPS: dict[str, type] = {
    "paths": PathsConfig,
    "system": SystemConfig,
    "data": DataConfig,
    "model.generator": GeneratorConfig,
    "model.discriminator": DiscriminatorConfig,
}
# the data configs at the default run's scale: what +scale=miniature trains on
MINIATURE_DATA = ("sample", "photos")


@dataclass(frozen=True)
class OptimSettings:
    """The ``optim`` group: its types and keys from the schema (config_schema.OptimConfig), what a key
    leaves out from conf/optim/default.yaml; each optimiser and scheduler built once on a stand-in
    parameter, so that torch refuses a value it would refuse at the first step (a negative learning
    rate, betas outside [0, 1), an unknown argument), naming the key. Ranges torch does not know of are
    checked here."""

    generator: dict[str, Any]
    discriminator: dict[str, Any]
    gan_k: int
    warmup_epochs: int
    gradient_clip_val: float | None
    fused: bool
    max_nonfinite_skips: int

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> OptimSettings:
        try:
            typed = OmegaConf.merge(
                OmegaConf.structured(OptimConfig), packaged_option("optim", "default"), values
            )
            plain = OmegaConf.to_container(typed, resolve=True, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(schema_error("optim", exc)) from None
        assert isinstance(plain, dict)
        settings = cls(**{str(key): value for key, value in plain.items()})
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.gan_k < 1:
            raise ConfigError(f"optim.gan_k must be >= 1 (critic steps per generator step), got {self.gan_k}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"optim.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.gradient_clip_val is not None and self.gradient_clip_val <= 0:
            raise ConfigError(f"optim.gradient_clip_val must be > 0 or null, got {self.gradient_clip_val}")
        if self.max_nonfinite_skips < 0:
            raise ConfigError(f"optim.max_nonfinite_skips must be >= 0, got {self.max_nonfinite_skips}")
        for network in ("generator", "discriminator"):
            config = getattr(self, network)
            stand_in = {name: [torch.nn.Parameter(torch.zeros(1))] for name in ("", *config["param_groups"])}
            build_optimizer(f"optim.{network}", config, stand_in, self.extra_arguments(config, "cpu"))

    def extra_arguments(self, config: Mapping[str, Any], device_type: str) -> dict[str, bool]:
        """What the suite adds to a network's optimiser: ``fused=True`` with ``optim.fused``; on CUDA,
        else, ``capturable=True`` where the optimiser takes it (step counts on the device: the non-finite
        guard's skip is a select there)."""
        if self.fused:
            return {"fused": True}
        if device_type == "cuda" and "capturable" in _parameters(config["optimizer"]["_target_"]):
            return {"capturable": True}
        return {}


def build_optimizer(
    key: str, config: Mapping[str, Any], groups: Mapping[str, list[Any]], extra: Mapping[str, Any]
) -> tuple[torch.optim.Optimizer, Any]:
    """One network's optimiser over its parameter ``groups`` (name -> parameters, "" for a network without
    named groups; the options of ``config["param_groups"][name]`` over the optimiser's) and its scheduler
    (None when not configured); a ConfigError naming ``key`` where either cannot be built. Options for a
    group the network does not declare are not used, with a warning."""
    unknown = sorted(set(config["param_groups"]) - set(groups))
    if unknown:  # the packaged config names TTSR's groups; another generator may declare others
        warnings.warn(
            f"{key}.param_groups: this network has no parameter group {unknown} (its groups: "
            f"{sorted(name for name in groups if name)}); those options are not used",
            stacklevel=2,
        )
    param_groups = [
        {"params": params, **({"name": name} if name else {}), **config["param_groups"].get(name, {})}
        for name, params in groups.items()
        if params
    ]
    try:
        optimizer = instantiate(config["optimizer"])(param_groups, **extra)
    except Exception as exc:
        raise ConfigError(f"{key}.optimizer: {_cause(exc)}") from None
    if config["scheduler"] is None:
        return optimizer, None
    try:
        return optimizer, instantiate(config["scheduler"])(optimizer)
    except Exception as exc:
        raise ConfigError(f"{key}.scheduler: {_cause(exc)}") from None


def schema_error(group: str, exc: OmegaConfBaseException) -> str:
    """A schema's refusal as one line naming the key: ``<group>.<key>: <what>``."""
    what = str(exc).splitlines()[0]
    return f"{group}.{exc.full_key}: {what}" if exc.full_key else f"{group}: {what}"


def _parameters(target: str) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(get_object(target)).parameters
    except Exception:
        return {}


def _cause(exc: BaseException) -> str:
    """The innermost message of an instantiation error, on one line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    message = str(exc).splitlines()[0] if isinstance(exc, OmegaConfBaseException) else str(exc)
    return " ".join(message.split()) or type(exc).__name__


@dataclass(frozen=True)
class LossTermSettings:
    """One entry of ``loss.terms``: its weight in the generator objective, its phase (``after_warmup``:
    only after ``optim.warmup_epochs``, else from the first epoch) and its module config (the entry less
    those two keys: ``_target_`` and constructor arguments)."""

    weight: float
    after_warmup: bool
    module: dict[str, Any]


def loss_terms(losses: Mapping[str, Any]) -> dict[str, LossTermSettings]:
    """The ``loss`` group's terms (``loss.terms.<name>``), in config order; errors name the config key.

    Each term is a mapping with ``_target_`` (a loss module, see :mod:`ttsr_lightning.losses.context`),
    ``weight`` (a number >= 0; a term is on iff its weight is > 0) and optionally ``after_warmup``
    (true or false, default false), typed by config_schema.LossTermConfig; every other key is a
    constructor argument.
    """
    try:
        group = OmegaConf.merge(OmegaConf.structured(LossConfig), losses)
    except OmegaConfBaseException as exc:
        raise ConfigError(schema_error("loss", exc)) from None
    if not group.terms:
        raise ConfigError("loss.terms: expected a mapping of name -> loss term config, got an empty one")
    checked: dict[str, LossTermSettings] = {}
    for name, entry in group.terms.items():
        key = f"loss.terms.{name}"
        if not isinstance(entry, DictConfig):
            raise ConfigError(f"{key}: expected a mapping with _target_ (a loss module), got {entry!r}")
        # open: a term's other keys are the constructor arguments of its own class
        term = OmegaConf.structured(LossTermConfig, flags={"struct": False})
        try:
            plain = OmegaConf.to_container(OmegaConf.merge(term, entry), resolve=True, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(schema_error(key, exc)) from None
        assert isinstance(plain, dict)
        if plain["weight"] < 0:
            raise ConfigError(f"{key}.weight must be >= 0, got {plain['weight']}")
        _refuse_policy_clash(key, plain["_target_"])
        module = {str(k): v for k, v in plain.items() if k not in TERM_POLICY_KEYS}
        checked[str(name)] = LossTermSettings(plain["weight"], plain["after_warmup"], module)
    if not any(term.weight > 0 for term in checked.values()):
        raise ConfigError("loss.terms: every weight is 0, nothing would be optimised")
    return checked


def _refuse_policy_clash(key: str, target: str) -> None:
    """ConfigError when the loss class ``target`` takes an argument named like a policy key (``weight``,
    ``after_warmup``): the suite reads those keys itself, so the class would never receive its own.
    Targets that cannot be imported are left to instantiation, which names them."""
    try:
        parameters = inspect.signature(get_object(target)).parameters
    except Exception:
        return
    clashing = [name for name in TERM_POLICY_KEYS if name in parameters]
    if clashing:
        raise ConfigError(
            f"{key}: {target} takes its own argument(s) {clashing}, but in loss.terms those keys are the "
            "term's weight in the objective and its phase; give the class a subclass or wrapper whose "
            "argument has another name"
        )


def resolved_run_config(cfg: DictConfig) -> dict[str, Any]:
    """A training run's config resolved to plain values, for :func:`check_run_config`. ``seed`` is
    checked first: the data groups interpolate it (``seed: ${seed}``), so resolving them would name
    their key, not the one the user typed."""
    check_seed(cfg.get("seed", 0))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    return {str(key): value for key, value in resolved.items()}


def check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed: expected an integer, got {seed!r}")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be in [0, 2**32), got {seed}")


def check_run_config(cfg: Mapping[str, Any]) -> None:
    """The whole config of a training run (resolved to plain values), as the module docstring says."""
    if cfg.get("table") is not None or cfg.get("sets") is not None:
        raise ConfigError(
            f"+experiment={cfg.get('name')} is an evaluation, not a training run: "
            f"python -m ttsr_lightning.evaluate +experiment={cfg.get('name')} ckpt=<checkpoint>"
        )
    if cfg.get("study") == "miniature" and (cfg.get("data") or {}).get("name") not in MINIATURE_DATA:
        raise ConfigError(
            "+scale=miniature must come after +experiment=... on the command line (Hydra merges them in "
            "that order; here the experiment's paper-scale data and model won); its data is data=sample, "
            "or data=photos (your own photos at the same scale)"
        )
    check_seed(cfg.get("seed", 0))
    optim = OptimSettings.from_dict(cfg.get("optim") or {})
    if cfg.get("loss") is not None:
        loss_terms(cfg["loss"])
    check_typed_groups(cfg)
    check_trainer_ranges(cfg.get("trainer") or {})
    ckpt_path, init_weights = cfg.get("ckpt_path"), cfg.get("init_weights")
    # `last`: the run folder's last.ckpt when there is one (then init_weights is not used), else nothing
    explicit = ckpt_path not in (None, "last")
    if explicit and not Path(str(ckpt_path)).is_file():
        raise ConfigError(f"ckpt_path: no checkpoint at {ckpt_path} (give the path to a .ckpt file, or last)")
    if init_weights is not None and not Path(str(init_weights)).is_file():
        raise ConfigError(f"init_weights: no weights file at {init_weights}")
    if explicit and init_weights is not None:
        raise ConfigError("ckpt_path and init_weights are exclusive: a resumed run already has its weights")
    max_epochs = cfg["trainer"].get("max_epochs")
    warmup_epochs = optim.warmup_epochs
    if max_epochs is not None and (isinstance(max_epochs, bool) or not isinstance(max_epochs, int)):
        # Lightning's Trainer refuses a negative count, not one of another type
        raise ConfigError(f"trainer.max_epochs: expected an integer or null, got {max_epochs!r}")
    # -1: no limit; other negative counts are Lightning's Trainer's to refuse
    if max_epochs is not None and 0 <= max_epochs < warmup_epochs:
        raise ConfigError(
            f"trainer.max_epochs ({max_epochs}) is shorter than optim.warmup_epochs "
            f"({warmup_epochs}): the adversarial/perceptual phase would never start"
        )


def check_typed_groups(cfg: Mapping[str, Any]) -> None:
    """The groups of :data:`TYPED_GROUPS` against their schemas once more: a ``+key`` typed on the command
    line is added to a typed group as the config composes (Hydra's ``+`` opens it), and refused here."""
    for key, schema in TYPED_GROUPS.items():
        node: Any = cfg
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            continue
        target = getattr(schema, "_target_", None)
        if target is not None and node.get("_target_") != target:
            continue
        try:
            OmegaConf.merge(OmegaConf.structured(schema), node)
        except OmegaConfBaseException as exc:
            raise ConfigError(schema_error(key, exc)) from None


# The trainer's counts that Lightning's Trainer takes without a check when it is built (0 or -3 alike;
# it refuses a bad max_epochs, max_steps, limit_*_batches or precision itself, naming the key):
# (lowest value, what is allowed).
TRAINER_MINIMUMS: dict[str, tuple[float, str]] = {
    "min_epochs": (0, "an integer >= 0, or null"),
    "min_steps": (0, "an integer >= 0, or null"),
    "check_val_every_n_epoch": (1, "an integer >= 1, or null"),
    "log_every_n_steps": (1, "an integer >= 1, or null"),
    "accumulate_grad_batches": (1, "an integer >= 1"),
    "num_sanity_val_steps": (-1, "an integer >= 0, or -1 for all, or null"),
    "gradient_clip_val": (0, "a number >= 0, or null"),
}


def check_trainer_ranges(trainer: Mapping[str, Any]) -> None:
    """ConfigError naming ``trainer.<key>`` for a count of :data:`TRAINER_MINIMUMS` out of its range."""
    for key, (lowest, allowed) in TRAINER_MINIMUMS.items():
        value = trainer.get(key)
        if value is None:
            continue
        kinds = (int, float) if key == "gradient_clip_val" else (int,)
        if isinstance(value, bool) or not isinstance(value, kinds) or value < lowest:
            raise ConfigError(f"trainer.{key}: expected {allowed}, got {value!r}")
