"""Discriminator: official layout and count, (B, 1) raw scores, clear errors on sizes; its Hydra config."""

from __future__ import annotations

import inspect

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ttsr_lightning.config_paths import packaged_option
from ttsr_lightning.models import Discriminator

CONFIG = packaged_option("model/discriminator", "srntt")  # conf/model/discriminator/srntt.yaml


def test_official_count_and_keys() -> None:
    critic = Discriminator()
    assert sum(p.numel() for p in critic.parameters()) == 17_821_473
    names = {key.rsplit(".", 1)[0] for key in critic.state_dict()}
    assert names == {f"conv{i}" for i in range(1, 11)} | {"fc1", "fc2"}
    assert critic.fc1.in_features == 5 * 5 * 512


def test_scores_shape_and_unbounded() -> None:
    critic = Discriminator(in_size=64)
    scores = critic(torch.rand(3, 3, 64, 64) * 2 - 1)
    assert scores.shape == (3, 1)
    with torch.no_grad():
        critic.fc2.bias.fill_(5.0)  # no output squashing: a WGAN critic
    assert critic(torch.zeros(1, 3, 64, 64)).item() > 1


def test_size_errors() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        Discriminator(in_size=100)
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        Discriminator(in_size=64)(torch.zeros(1, 3, 96, 96))


def test_config_has_exactly_the_constructor_arguments() -> None:
    config = OmegaConf.to_container(CONFIG)
    assert isinstance(config, dict)
    parameters = inspect.signature(Discriminator).parameters
    assert set(config) == {"_target_"} | set(parameters)
    assert config["in_size"] == "${data.train.patch_size}"  # the critic sees the HR training patch
    assert isinstance(instantiate(CONFIG, in_size=160), Discriminator)
