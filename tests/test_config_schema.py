"""The config schemas: each ``_target_`` schema is exactly its class's constructor arguments, and a
term of the loss group keeps the arguments of its own class."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import get_object
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from helpers.config import compose_config
from ttsr_lightning.config_schema import TARGET_SCHEMAS, SystemConfig
from ttsr_lightning.errors import ConfigError
from ttsr_lightning.settings import check_run_config, check_typed_groups, loss_terms, resolved_run_config
from ttsr_lightning.system import TTSRSystem

HYDRA_KEYS = {"_target_", "_convert_"}
# TTSRSystem's arguments that are other config groups (model, loss, optim, protocol)
GROUP_ARGUMENTS = {"generator", "discriminator", "losses", "optim", "protocols"}


def fields(schema: type) -> set[str]:
    return {field.name for field in dataclasses.fields(schema)}


@pytest.mark.parametrize("schema", TARGET_SCHEMAS, ids=lambda schema: schema.__name__)
def test_a_target_schema_is_its_constructors_arguments(schema: type) -> None:
    target = next(field.default for field in dataclasses.fields(schema) if field.name == "_target_")
    assert isinstance(target, str)
    parameters = set(inspect.signature(get_object(target)).parameters)
    assert fields(schema) - HYDRA_KEYS == parameters


def test_the_system_schema_is_the_systems_own_arguments() -> None:
    parameters = set(inspect.signature(TTSRSystem).parameters)
    assert fields(SystemConfig) == parameters - GROUP_ARGUMENTS


def test_a_loss_term_is_open_to_its_classs_arguments() -> None:
    terms = loss_terms(
        {"terms": {"gan": {"_target_": "ttsr_lightning.losses.WGANGPLoss", "weight": 1, "gp_weight": 5.0}}}
    )
    assert terms["gan"].weight == 1.0 and terms["gan"].after_warmup is False
    assert terms["gan"].module == {"_target_": "ttsr_lightning.losses.WGANGPLoss", "gp_weight": 5.0}


def test_keys_of_user_chosen_targets_can_be_added(tmp_path: Path) -> None:
    """Optimisers, callbacks and loss terms are classes a user chooses: ``+`` adds their arguments."""
    cfg = compose_config(
        tmp_path,
        tmp_path,
        [
            "+optim.generator.optimizer.weight_decay=0.01",
            "+callbacks.early_stop={_target_: lightning.pytorch.callbacks.EarlyStopping, monitor: val/psnr}",
            "+loss.terms.edge={_target_: my.EdgeLoss, weight: 0.5, sharpness: 2}",
            "+loss.terms.adversarial.gp_scale=2",
        ],
    )
    assert cfg.optim.generator.optimizer.weight_decay == 0.01
    assert cfg.callbacks.early_stop.monitor == "val/psnr"
    assert cfg.loss.terms.edge.sharpness == 2 and cfg.loss.terms.adversarial.gp_scale == 2


@pytest.mark.parametrize(
    ("override", "refusal"),
    [
        ("model.generator.n_feats=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
        ("data.train.pin_memory=maybe", "Value 'maybe' is not a valid bool"),
        ("paths.log_dir=[a]", "Cannot convert 'list' to string"),
        ("system.compile=maybe", "Value 'maybe' is not a valid bool"),
    ],
)
def test_the_schema_refuses_as_the_config_composes(tmp_path: Path, override: str, refusal: str) -> None:
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config(tmp_path, tmp_path, [override])
    assert isinstance(caught.value.__cause__, ValidationError)
    assert refusal in str(caught.value.__cause__)


@pytest.mark.parametrize(
    ("override", "refusal"),
    [
        ("+model.generator.width=3", "model.generator.width: Key 'width' not in 'GeneratorConfig'"),
        ("+loss.weights=1", "loss.weights: Key 'weights' not in 'LossConfig'"),
        ("+paths.cache_dir=x", "paths.cache_dir: Key 'cache_dir' not in 'PathsConfig'"),
        ("+system.fast=true", "system.fast: Key 'fast' not in 'SystemConfig'"),
    ],
)
def test_a_key_added_to_a_typed_group_is_refused_before_the_run(
    tmp_path: Path, override: str, refusal: str
) -> None:
    """Hydra's ``+`` opens a typed group as the config composes; the run's checks refuse the key."""
    cfg = compose_config(tmp_path, tmp_path, [override])
    with pytest.raises(ConfigError, match=refusal):
        check_run_config(resolved_run_config(cfg))


def test_a_generator_of_ones_own_is_its_classs_config(tmp_path: Path) -> None:
    other = [
        "~model.generator",
        "+model.generator={_target_: my.Generator, channels: 8}",
        "loss.terms.perceptual.vgg_weights=random",
    ]
    cfg = compose_config(tmp_path, tmp_path, other, tiny=False)
    check_typed_groups(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
