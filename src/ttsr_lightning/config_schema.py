"""The schemas of the suite's own config groups: OmegaConf structured configs in Hydra's ConfigStore.

A value of the wrong type or a key the schema does not know is refused as the config composes (Hydra
merges the command line into the schema), and where a group is built from plain values outside Hydra
(:meth:`ttsr_lightning.settings.OptimSettings.from_dict`), by the same schema. The values themselves live
in the YAML files (conf/optim/default.yaml); a schema gives types only. Ranges are checked where the
values are used (settings.py).

``optim``: one optimiser per network, and optionally a learning-rate scheduler, each a ``_target_`` /
``_partial_: true`` entry called with the network's parameter groups; ``param_groups.<group>`` gives a
group of the generator (its ``parameter_groups()``: TTSR's main network ``generator`` and ``lte``)
settings of its own over the optimiser's, as torch's per-group options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# the name of each schema in its group, listed first in that group's defaults (conf/optim/default.yaml)
OPTIM_SCHEMA = "optim_schema"


@dataclass
class NetworkOptimConfig:
    """How one network is optimised."""

    # {_target_: torch.optim.Adam, _partial_: true, lr: ..., ...}: called with the parameter groups
    optimizer: Any = MISSING
    # group name -> its own options (lr, weight_decay, ...) over the optimiser's
    param_groups: dict[str, Any] = field(default_factory=dict)
    # {_target_: torch.optim.lr_scheduler.X, _partial_: true, ...}: called with the optimiser; stepped once
    # per finished epoch after the warm-up. null: a constant learning rate
    scheduler: Any = None


@dataclass
class OptimConfig:
    """The ``optim`` group (conf/optim/default.yaml says what each key means)."""

    generator: NetworkOptimConfig = field(default_factory=NetworkOptimConfig)
    discriminator: NetworkOptimConfig = field(default_factory=NetworkOptimConfig)
    gan_k: int = MISSING
    warmup_epochs: int = MISSING
    gradient_clip_val: float | None = None
    fused: bool = False
    max_nonfinite_skips: int = 0


def store_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore (idempotent)."""
    ConfigStore.instance().store(group="optim", name=OPTIM_SCHEMA, node=OptimConfig)
