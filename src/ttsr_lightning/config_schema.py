"""The schemas of the suite's own config groups: OmegaConf structured configs in Hydra's ConfigStore.

Each schema is listed first in its group's defaults (``defaults: [<group>_schema, _self_]``), so a value
of the wrong type or a key the schema does not know is refused as the config composes (Hydra merges the
YAML and the command line into the schema), naming the key; where a group is read from plain values
outside Hydra (a checkpoint's hyper-parameters: :meth:`ttsr_lightning.settings.OptimSettings.from_dict`,
:func:`ttsr_lightning.settings.loss_terms`), by the same schema. The values themselves live in the YAML
files; a schema gives types, and defaults only where a YAML file leaves a key out. Ranges and what no
type can say (a file exists, two settings agree) are checked where the values are used (settings.py, the
constructors). OmegaConf has no union other than Optional: a value that may be a bool or a string is
``Any`` (``system.lpips``).

- ``paths`` (:class:`PathsConfig`), ``system`` (:class:`SystemConfig`: the keyword arguments of
  :class:`ttsr_lightning.system.TTSRSystem` that are not the other groups);
- ``model/generator``, ``model/discriminator``, ``data`` (``train``, ``test``): the constructor arguments
  of their ``_target_`` (:data:`TARGET_SCHEMAS`; tests/test_config_schema.py keeps them equal). A generator
  of another class is a config of its own (``~model.generator '+model.generator={_target_: ...}'``);
- ``loss``: ``terms``, a mapping name -> term. A term's own arguments are those of its user-chosen class,
  so the group types the mapping only; each term's ``weight`` and ``after_warmup`` are typed by
  :class:`LossTermConfig` (open to the class's arguments) when the terms are read;
- ``optim``: one optimiser per network, and optionally a learning-rate scheduler, each a ``_target_`` /
  ``_partial_: true`` entry called with the network's parameter groups (open: its arguments are those of
  the chosen class, refused by the class itself); ``param_groups.<group>`` gives a group of the generator
  (its ``parameter_groups()``: TTSR's main network ``generator`` and ``lte``) settings of its own over the
  optimiser's, as torch's per-group options.

The trainer, callbacks and loggers are Lightning's classes, which refuse their own values (a Lightning
``MisconfigurationException`` or a constructor's error, reported naming the key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# the name of each schema in its group, listed first in that group's defaults (conf/<group>/*.yaml)
OPTIM_SCHEMA = "optim_schema"
LOSS_SCHEMA = "loss_schema"
SYSTEM_SCHEMA = "system_schema"
PATHS_SCHEMA = "paths_schema"
DATA_SCHEMA = "data_schema"
GENERATOR_SCHEMA = "generator_schema"
DISCRIMINATOR_SCHEMA = "discriminator_schema"


@dataclass
class PathsConfig:
    """The ``paths`` group (conf/paths/default.yaml)."""

    root_dir: str = MISSING
    data_dir: str = MISSING
    log_dir: str = MISSING
    # the job's folder (${hydra:runtime.output_dir}): null where no Hydra job runs (the compose API)
    output_dir: str | None = MISSING


@dataclass
class SystemConfig:
    """The ``system`` group (conf/system/default.yaml): TTSRSystem's keyword arguments besides the model,
    loss, optim and protocol groups."""

    lazy_lte_copy_sync: bool = MISSING
    channels_last: bool = MISSING
    compile: bool = MISSING
    # auto, true, false or a file's path: a bool or a string, which OmegaConf cannot type
    lpips: Any = MISSING
    compile_mode: str = MISSING


@dataclass
class GeneratorConfig:
    """``model.generator`` (conf/model/generator/ttsr.yaml): ttsr_lightning.models.TTSRGenerator."""

    _target_: str = "ttsr_lightning.models.TTSRGenerator"
    n_feats: int = MISSING
    num_res_blocks: list[int] = MISSING
    use_hard_attention: bool = MISSING
    use_soft_attention: bool = MISSING
    learnable_extractor: bool = MISSING
    csfi: bool = MISSING
    # imagenet | auto | random | a file's path
    vgg_weights: str = MISSING
    search_transfer: str = MISSING
    batched_extractor: bool = MISSING
    bicubic_residual: bool = MISSING
    relevance_kernel: str = MISSING


@dataclass
class DiscriminatorConfig:
    """``model.discriminator`` (conf/model/discriminator/srntt.yaml): ttsr_lightning.models.Discriminator."""

    _target_: str = "ttsr_lightning.models.Discriminator"
    in_size: int = MISSING


@dataclass
class TrainDataConfig:
    """``data.train``: ttsr_lightning.data.TrainDataModule."""

    _target_: str = "ttsr_lightning.data.TrainDataModule"
    _convert_: str = "all"
    train_root: str = MISSING
    # evaluation-set specs (ttsr_lightning/data/eval_sets.py): their keys depend on the set
    val_sets: list[Any] = MISSING
    val_fraction: float = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    pin_memory: bool = MISSING
    persistent_workers: bool = MISSING
    patch_size: int = MISSING
    augment: bool = MISSING
    seed: int = MISSING
    sample_root: str | None = None


@dataclass
class TestDataConfig:
    """``data.test``: ttsr_lightning.data.TestDataModule."""

    _target_: str = "ttsr_lightning.data.TestDataModule"
    _convert_: str = "all"
    sets: list[Any] = MISSING
    num_workers: int = MISSING
    pin_memory: bool = MISSING
    persistent_workers: bool = MISSING
    sample_root: str | None = None


@dataclass
class DataConfig:
    """The ``data`` group (conf/data/*.yaml)."""

    # recorded in run.json
    name: str = MISSING
    train: TrainDataConfig = field(default_factory=TrainDataConfig)
    test: TestDataConfig = field(default_factory=TestDataConfig)


# each schema that is exactly the constructor arguments of its _target_ (besides Hydra's own keys)
TARGET_SCHEMAS: tuple[type, ...] = (GeneratorConfig, DiscriminatorConfig, TrainDataConfig, TestDataConfig)


@dataclass
class LossTermConfig:
    """One entry of ``loss.terms``: the two keys the training step reads, typed; every other key is a
    constructor argument of its ``_target_`` (the schema is used with OmegaConf's struct flag off)."""

    _target_: str = MISSING
    # its weight in the generator objective (0 turns it off)
    weight: float = MISSING
    # true: only after optim.warmup_epochs
    after_warmup: bool = False


@dataclass
class LossConfig:
    """The ``loss`` group (conf/loss/default.yaml): term name -> term (:class:`LossTermConfig`)."""

    terms: dict[str, Any] = MISSING


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
    store = ConfigStore.instance()
    store.store(group="optim", name=OPTIM_SCHEMA, node=OptimConfig)
    store.store(group="loss", name=LOSS_SCHEMA, node=LossConfig)
    store.store(group="system", name=SYSTEM_SCHEMA, node=SystemConfig)
    store.store(group="paths", name=PATHS_SCHEMA, node=PathsConfig)
    store.store(group="data", name=DATA_SCHEMA, node=DataConfig)
    store.store(group="model/generator", name=GENERATOR_SCHEMA, node=GeneratorConfig)
    store.store(group="model/discriminator", name=DISCRIMINATOR_SCHEMA, node=DiscriminatorConfig)
