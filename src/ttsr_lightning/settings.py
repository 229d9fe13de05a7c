"""Config validation: every value that would only fail (or mislead) later is refused at start-up.

One small module owns it, so the LightningModule keeps only the training policy and the entry points
stay thin. Each check raises :class:`ConfigError` naming the config key and what was expected.

- :class:`OptimSettings`: the ``optim`` group (each network's optimiser and scheduler, the warm-up, the
  critic steps, the non-finite policy), as a frozen dataclass, typed by its schema (config_schema.py);
- :class:`LossTermSettings` / :func:`loss_terms`: the ``loss`` group, ``loss.terms.<name>``: each term's
  weight, phase and module config; a term is on iff its weight is > 0;
- :func:`check_run_config`: the whole config of a training run, before any data or model is built:
  the type of every value (``seed``, ``system``, and every argument of the ``_target_``
  classes of ``model``, ``data``, ``loss``, ``trainer`` and ``callbacks``, read off their signatures:
  :func:`check_arguments`), the ranges of the trainer's counts, ``ckpt_path``, ``init_weights`` and
  ``trainer.max_epochs`` against the warm-up.
"""

from __future__ import annotations

import inspect
import types
import typing
import warnings
from collections import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ttsr_lightning.config_paths import CONFIG_DIR
from ttsr_lightning.config_schema import OptimConfig
from ttsr_lightning.errors import ConfigError

# the keys of a loss term's config that are policy (the training step's), not constructor arguments
TERM_POLICY_KEYS = ("weight", "after_warmup")
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
            typed = OmegaConf.merge(OmegaConf.structured(OptimConfig), _packaged_optim(), values)
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
            for part in ("optimizer", "scheduler"):
                check_arguments(f"optim.{network}.{part}", config[part])
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


def _packaged_optim() -> Any:
    """conf/optim/default.yaml's values (its defaults list aside)."""
    packaged = OmegaConf.load(CONFIG_DIR / "optim" / "default.yaml")
    assert isinstance(packaged, DictConfig)
    return OmegaConf.masked_copy(packaged, [str(key) for key in packaged if key != "defaults"])


def _parameters(target: str) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(get_object(target)).parameters
    except Exception:
        return {}


def _cause(exc: BaseException) -> str:
    """The innermost message of an instantiation error, on one line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return " ".join(str(exc).split()) or type(exc).__name__


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
    (true or false, default false); every other key is a constructor argument.
    """
    unknown = sorted(set(losses) - {"terms"})
    if unknown:
        raise ConfigError(f"loss: unknown key(s) {unknown}; expected terms (loss.terms.<name>)")
    terms = losses.get("terms")
    if not isinstance(terms, Mapping) or not terms:
        raise ConfigError(f"loss.terms: expected a mapping of name -> loss term config, got {terms!r}")
    checked: dict[str, LossTermSettings] = {}
    for name, entry in terms.items():
        key = f"loss.terms.{name}"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("_target_"), str):
            raise ConfigError(f"{key}: expected a mapping with _target_ (a loss module), got {entry!r}")
        if "weight" not in entry:
            raise ConfigError(f"{key}.weight: missing (a number >= 0; 0 turns the term off)")
        check_type(f"{key}.weight", entry["weight"], float)
        check_type(f"{key}.after_warmup", entry.get("after_warmup", False), bool)
        weight = float(entry["weight"])
        if weight < 0:
            raise ConfigError(f"{key}.weight must be >= 0, got {weight}")
        _refuse_policy_clash(key, entry["_target_"])
        module = {k: v for k, v in entry.items() if k not in TERM_POLICY_KEYS}
        checked[str(name)] = LossTermSettings(weight, bool(entry.get("after_warmup", False)), module)
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
    seed = cfg.get("seed", 0)
    check_type("seed", seed, int)
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be in [0, 2**32), got {seed}")
    optim = OptimSettings.from_dict(cfg.get("optim") or {})
    if cfg.get("loss") is not None:
        loss_terms(cfg["loss"])
    check_arguments("system", {"_target_": "ttsr_lightning.system.TTSRSystem", **(cfg.get("system") or {})})
    for group in ("model", "data", "loss", "trainer", "callbacks"):
        check_arguments(group, cfg.get(group))
    check_trainer_ranges(cfg.get("trainer") or {})
    ckpt_path, init_weights = cfg.get("ckpt_path"), cfg.get("init_weights")
    check_type("ckpt_path", ckpt_path, str | None)
    check_type("init_weights", init_weights, str | None)
    # `last`: the run folder's last.ckpt when there is one (then init_weights is not used), else nothing
    explicit = ckpt_path not in (None, "last")
    if explicit and not Path(str(ckpt_path)).is_file():
        raise ConfigError(f"ckpt_path: no checkpoint at {ckpt_path} (give the path to a .ckpt file, or last)")
    if init_weights is not None and not Path(init_weights).is_file():
        raise ConfigError(f"init_weights: no weights file at {init_weights}")
    if explicit and init_weights is not None:
        raise ConfigError("ckpt_path and init_weights are exclusive: a resumed run already has its weights")
    max_epochs = cfg["trainer"].get("max_epochs")
    warmup_epochs = optim.warmup_epochs
    if max_epochs is not None and max_epochs != -1 and max_epochs < warmup_epochs:
        raise ConfigError(
            f"trainer.max_epochs ({max_epochs}) is shorter than optim.warmup_epochs "
            f"({warmup_epochs}): the adversarial/perceptual phase would never start"
        )


# ----------------------------------------------------------------------------------- value types
# The trainer's counts and fractions: (lowest value, what is allowed). Fractions of batches (floats)
# must also be <= 1.
TRAINER_MINIMUMS: dict[str, tuple[float, str]] = {
    "max_epochs": (-1, "an integer >= 0, or -1 for no limit"),
    "min_epochs": (0, "an integer >= 0"),
    "max_steps": (-1, "an integer >= 0, or -1 for no limit"),
    "min_steps": (0, "an integer >= 0"),
    "check_val_every_n_epoch": (1, "an integer >= 1, or null"),
    "log_every_n_steps": (1, "an integer >= 1"),
    "accumulate_grad_batches": (1, "an integer >= 1"),
    "num_sanity_val_steps": (-1, "an integer >= 0, or -1 for all"),
    "gradient_clip_val": (0, "a number >= 0, or null"),
    "limit_train_batches": (0, "a batch count >= 0 or a fraction in [0, 1]"),
    "limit_val_batches": (0, "a batch count >= 0 or a fraction in [0, 1]"),
    "limit_test_batches": (0, "a batch count >= 0 or a fraction in [0, 1]"),
    "limit_predict_batches": (0, "a batch count >= 0 or a fraction in [0, 1]"),
}
_HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def check_trainer_ranges(trainer: Mapping[str, Any]) -> None:
    """ConfigError naming ``trainer.<key>`` for a count or fraction out of its range."""
    for key, (lowest, allowed) in TRAINER_MINIMUMS.items():
        value = trainer.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            fraction_too_big = isinstance(value, float) and key.startswith("limit_") and value > 1
            if value < lowest or fraction_too_big:
                raise ConfigError(f"trainer.{key}: expected {allowed}, got {value!r}")


def check_arguments(key: str, node: Any) -> None:
    """Checks every value of ``node`` (and of the mappings and lists below it) that is an argument of
    a ``_target_`` against the type annotation of that argument; ConfigError naming the key, the value
    and the type expected. Targets that cannot be imported are left to instantiation, which names them."""
    if isinstance(node, list | tuple):
        for index, item in enumerate(node):
            check_arguments(f"{key}[{index}]", item)
        return
    if not isinstance(node, Mapping):
        return
    hints: dict[str, Any] = {}
    target = node.get("_target_")
    if isinstance(target, str):
        try:
            function = get_object(target)
            hints = typing.get_type_hints(function.__init__ if inspect.isclass(function) else function)
        except Exception:  # an unknown target, or annotations that cannot be evaluated: left to Hydra
            hints = {}
    for name, value in node.items():
        if name in _HYDRA_KEYS:
            continue
        child = f"{key}.{name}"
        if name in hints and not (isinstance(value, Mapping) and "_target_" in value):
            check_type(child, value, hints[name])
        check_arguments(child, value)


def check_type(key: str, value: Any, hint: Any) -> None:
    """ConfigError naming ``key`` when ``value`` (a plain config value) does not fit ``hint``."""
    if not _fits(value, hint):
        raise ConfigError(f"{key}: expected {_describe(hint)}, got {value!r}")


def _members(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint``; annotations this check cannot judge (classes, callables) fit."""
    members = _members(hint)
    if members is not None:
        return any(_fits(value, member) for member in members)
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str or hint is Path:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in arguments and type(value) in {type(argument) for argument in arguments}
    if origin in (list, tuple, abc.Sequence):
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            return len(value) == len(arguments) and all(map(_fits, value, arguments))
        return not arguments or all(_fits(item, arguments[0]) for item in value)
    if origin in (dict, abc.Mapping) or hint in (dict, abc.Mapping):
        return isinstance(value, Mapping)
    return hint is not torch.Tensor  # a config value is never a tensor (torch.optim: float | Tensor)


def _describe(hint: Any) -> str:
    members = _members(hint)
    if members is not None:
        literals = [v for m in members if typing.get_origin(m) is typing.Literal for v in typing.get_args(m)]
        others = [
            _describe(m)
            for m in members
            if typing.get_origin(m) is not typing.Literal and m is not torch.Tensor
        ]
        return " or ".join(dict.fromkeys([f"one of {literals}"] * bool(literals) + others))
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return f"one of {list(arguments)}"
    if origin in (list, tuple, abc.Sequence):
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            return f"a list of {len(arguments)} ({', '.join(_describe(a) for a in arguments)})"
        return f"a list of ({_describe(arguments[0])})" if arguments else "a list"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    if hint is type(None) or hint is None:
        return "null"
    if origin in (dict, abc.Mapping) or hint in (dict, abc.Mapping):
        return "a mapping"
    return names.get(hint, getattr(hint, "__name__", str(hint)))
