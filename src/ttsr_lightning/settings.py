"""Config validation: every value that would only fail (or mislead) later is refused at start-up.

One small module owns it, so the LightningModule keeps only the training policy and the entry points
stay thin. Each check raises :class:`ConfigError` naming the config key and what was expected.

- :class:`OptimSettings`: the ``optim`` group (learning rates, betas, the warm-up, the critic steps,
  the non-finite policy), as a frozen dataclass;
- :func:`loss_weights`: the ``loss`` group; a term is on iff its weight is > 0;
- :func:`check_run_config`: the keys of a training run (``ckpt_path``, ``init_weights``,
  ``trainer.max_epochs`` against the warm-up).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttsr_lightning.errors import ConfigError

LOSS_TERMS = ("reconstruction", "perceptual", "transferal_perceptual", "adversarial")


@dataclass(frozen=True)
class OptimSettings:
    """The ``optim`` config group, validated (see conf/optim/default.yaml for each key's meaning)."""

    generator_lr: float = 1e-4
    lte_lr: float = 1e-5
    generator_betas: tuple[float, float] = (0.9, 0.999)
    discriminator_lr: float = 1e-4
    discriminator_betas: tuple[float, float] = (0.0, 0.9)
    eps: float = 1e-8
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.5
    gan_k: int = 2
    warmup_epochs: int = 2
    gradient_clip_val: float | None = None
    fused: bool = False
    max_nonfinite_skips: int = 0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> OptimSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"optim: unknown key(s) {unknown}; expected some of {sorted(known)}")
        converted: dict[str, Any] = dict(values)
        for key in ("generator_betas", "discriminator_betas", "lr_milestones"):
            if key in converted:
                converted[key] = tuple(converted[key])
        settings = cls(**converted)
        settings.validate()
        return settings

    def validate(self) -> None:
        for key in ("generator_lr", "lte_lr", "discriminator_lr", "eps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"optim.{key} must be >= 0, got {getattr(self, key)}")
        if self.gan_k < 1:
            raise ConfigError(f"optim.gan_k must be >= 1 (critic steps per generator step), got {self.gan_k}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"optim.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"optim.lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if list(self.lr_milestones) != sorted(set(self.lr_milestones)) or any(
            m <= 0 for m in self.lr_milestones
        ):
            raise ConfigError(
                f"optim.lr_milestones must be increasing positive epochs, got {list(self.lr_milestones)}"
            )
        if self.gradient_clip_val is not None and self.gradient_clip_val <= 0:
            raise ConfigError(f"optim.gradient_clip_val must be > 0 or null, got {self.gradient_clip_val}")
        for key in ("generator_betas", "discriminator_betas"):
            betas = getattr(self, key)
            if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
                raise ConfigError(f"optim.{key} must be two numbers in [0, 1), got {list(betas)}")
        if self.max_nonfinite_skips < 0:
            raise ConfigError(f"optim.max_nonfinite_skips must be >= 0, got {self.max_nonfinite_skips}")


def loss_weights(losses: Mapping[str, Any]) -> dict[str, float]:
    """The ``loss`` group's weights, one per term of ``LOSS_TERMS``; a term is on iff its weight is > 0.

    A term that is on needs its module config (``loss.<term>._target_``); errors name
    ``loss.weights.<term>`` or ``loss.<term>``.
    """
    weights = dict(losses.get("weights") or {})
    unknown = sorted(set(weights) - set(LOSS_TERMS))
    if unknown:
        raise ConfigError(f"loss.weights: unknown term(s) {unknown}; expected some of {list(LOSS_TERMS)}")
    checked: dict[str, float] = {}
    for term in LOSS_TERMS:
        weight = float(weights.get(term, 0.0))
        if weight < 0:
            raise ConfigError(f"loss.weights.{term} must be >= 0, got {weight}")
        if weight > 0 and not isinstance(losses.get(term), Mapping):
            raise ConfigError(f"loss.{term} must be configured (a _target_) when loss.weights.{term} > 0")
        checked[term] = weight
    if sum(checked.values()) == 0:
        raise ConfigError("loss.weights: every weight is 0, nothing would be optimised")
    return checked


def check_run_config(cfg: Mapping[str, Any]) -> None:
    """The keys of a training run: ``ckpt_path``, ``init_weights``, epochs against the warm-up."""
    if cfg.get("table") is not None or cfg.get("sets") is not None:
        raise ConfigError(
            f"+experiment={cfg.get('name')} is an evaluation, not a training run: "
            f"python -m ttsr_lightning.evaluate +experiment={cfg.get('name')} ckpt=<checkpoint>"
        )
    if cfg.get("study") == "miniature" and cfg["data"].get("name") != "sample":
        raise ConfigError(
            "+scale=miniature must come after +experiment=... on the command line (Hydra merges them in "
            "that order; here the experiment's paper-scale data and model won)"
        )
    ckpt_path, init_weights = cfg.get("ckpt_path"), cfg.get("init_weights")
    # `last`: the run folder's last.ckpt when there is one (then init_weights is not used), else nothing
    explicit = ckpt_path not in (None, "last")
    if explicit and not Path(str(ckpt_path)).is_file():
        raise ConfigError(f"ckpt_path: no checkpoint at {ckpt_path} (give the path to a .ckpt file, or last)")
    if init_weights is not None and not Path(init_weights).is_file():
        raise ConfigError(f"init_weights: no weights file at {init_weights}")
    if explicit and init_weights is not None:
        raise ConfigError("ckpt_path and init_weights are exclusive: a resumed run already has its weights")
    max_epochs = cfg["trainer"].get("max_epochs")
    warmup_epochs = cfg["optim"].get("warmup_epochs", OptimSettings.warmup_epochs)
    if max_epochs is not None and max_epochs < warmup_epochs:
        raise ConfigError(
            f"trainer.max_epochs ({max_epochs}) is shorter than optim.warmup_epochs "
            f"({warmup_epochs}): the adversarial/perceptual phase would never start"
        )
