"""Config validation: each bad value is refused at start-up with a message naming its key."""

from __future__ import annotations

from typing import Any

import pytest

from ttsr_lightning.errors import ConfigError
from ttsr_lightning.settings import OptimSettings, check_run_config, loss_weights

LOSSES = {
    "reconstruction": {"_target_": "ttsr_lightning.losses.ReconstructionLoss"},
    "perceptual": {"_target_": "ttsr_lightning.losses.PerceptualLoss"},
    "weights": {"reconstruction": 1.0, "perceptual": 0.01},
}


@pytest.mark.parametrize(
    ("optim", "message"),
    [
        ({"gan_k": 0}, "optim.gan_k must be >= 1"),
        ({"generator_lr": -1.0}, "optim.generator_lr must be >= 0"),
        ({"warmup_epochs": -1}, "optim.warmup_epochs"),
        ({"lr_milestones": [5, 3]}, "optim.lr_milestones"),
        ({"discriminator_betas": [0.0, 1.5]}, "optim.discriminator_betas"),
        ({"gen_lr": 1e-4}, "optim: unknown key"),
    ],
)
def test_bad_optim_values_name_the_key(optim: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OptimSettings.from_dict(optim)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"reconstruction": 1.0, "adversarial": -0.1}, "loss.weights.adversarial must be >= 0"),
        ({"reconstruction": 1.0, "texture": 1.0}, "unknown term"),
        ({"reconstruction": 0.0}, "every weight is 0"),
    ],
)
def test_bad_loss_weights_name_the_key(weights: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        loss_weights({**LOSSES, "weights": weights})


def test_a_term_is_on_iff_its_weight_is_positive() -> None:
    weights = loss_weights({**LOSSES, "weights": {"reconstruction": 1.0, "perceptual": 0.0}})
    assert weights == {
        "reconstruction": 1.0,
        "perceptual": 0.0,
        "transferal_perceptual": 0.0,
        "adversarial": 0.0,
    }
    with pytest.raises(ConfigError, match="loss.adversarial must be configured"):
        loss_weights({**LOSSES, "weights": {"reconstruction": 1.0, "adversarial": 0.001}})


def test_the_nonfinite_policy_is_off_by_default_and_checked() -> None:
    assert OptimSettings.from_dict({}).max_nonfinite_skips == 0
    with pytest.raises(ConfigError, match="optim.max_nonfinite_skips must be >= 0"):
        OptimSettings.from_dict({"max_nonfinite_skips": -1})


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ({"ckpt_path": "/nonexistent/last.ckpt"}, "ckpt_path: no checkpoint at /nonexistent/last.ckpt"),
        ({"init_weights": "/nonexistent/TTSR.pt"}, "init_weights: no weights file at /nonexistent/TTSR.pt"),
        (
            {"trainer": {"max_epochs": 1}, "optim": {"warmup_epochs": 2}},
            r"trainer.max_epochs \(1\) is shorter",
        ),
    ],
)
def test_run_keys(run: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_run_config({"trainer": {}, "optim": {}, **run})
