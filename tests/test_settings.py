"""Config validation: each bad value is refused at start-up with a message naming its key."""

from __future__ import annotations

from typing import Any

import pytest

from ttsr_lightning.errors import ConfigError
from ttsr_lightning.settings import OptimSettings, check_run_config, loss_terms

LOSSES = {
    "terms": {
        "reconstruction": {"_target_": "ttsr_lightning.losses.ReconstructionLoss", "weight": 1.0},
        "perceptual": {
            "_target_": "ttsr_lightning.losses.PerceptualLoss",
            "weight": 0.01,
            "after_warmup": True,
        },
    }
}


@pytest.mark.parametrize(
    ("optim", "message"),
    [
        ({"gan_k": 0}, "optim.gan_k must be >= 1"),
        ({"gan_k": "abc"}, "optim.gan_k: Value 'abc' of type 'str' could not be converted to Integer"),
        ({"generator": {"optimizer": {"lr": -1.0}}}, "optim.generator.optimizer: Invalid learning rate"),
        # the optimiser's arguments are its class's: torch refuses them, under the optimiser's key
        ({"generator": {"optimizer": {"lr": "abc"}}}, "optim.generator.optimizer: '<=' not supported"),
        ({"warmup_epochs": -1}, "optim.warmup_epochs must be >= 0, got -1"),
        (
            {
                "generator": {
                    "scheduler": {"_target_": "torch.optim.lr_scheduler.MultiStepLR", "_partial_": True}
                }
            },
            "optim.generator.scheduler: MultiStepLR.__init__.. missing 1 required positional argument",
        ),
        (
            {"discriminator": {"optimizer": {"betas": [0.0, 1.5]}}},
            "optim.discriminator.optimizer: Invalid beta parameter at index 1: 1.5",
        ),
        ({"generator_lr": 1e-4}, "optim.generator_lr: Key 'generator_lr' not in 'OptimConfig'"),
    ],
)
def test_bad_optim_values_name_the_key(optim: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OptimSettings.from_dict(optim)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"perceptual": {"weight": -0.1}}, "loss.terms.perceptual.weight must be >= 0"),
        (
            {"perceptual": {"weight": "abc"}},
            "loss.terms.perceptual.weight: Value 'abc' of type 'str' could not be converted to Float",
        ),
        (
            {"perceptual": {"after_warmup": "maybe"}},
            "loss.terms.perceptual.after_warmup: Value 'maybe' is not a valid bool",
        ),
        ({"edge": {"weight": 1.0}}, "loss.terms.edge._target_: Missing mandatory value"),
        ({"edge": {"_target_": "x.Edge"}}, "loss.terms.edge.weight: Missing mandatory value"),
        ({"reconstruction": {"weight": 0.0}, "perceptual": {"weight": 0}}, "every weight is 0"),
        (
            {"class_weighted": {"_target_": "torch.nn.CrossEntropyLoss", "weight": 1.0}},
            r"loss.terms.class_weighted: torch.nn.CrossEntropyLoss takes its own argument\(s\) \['weight'\]",
        ),
    ],
)
def test_bad_loss_terms_name_the_key(change: dict[str, dict[str, Any]], message: str) -> None:
    terms = {name: {**LOSSES["terms"].get(name, {}), **value} for name, value in change.items()}
    with pytest.raises(ConfigError, match=message):
        loss_terms({"terms": {**LOSSES["terms"], **terms}})


def test_the_loss_group_holds_terms_only() -> None:
    with pytest.raises(ConfigError, match="loss.weights: Key 'weights' not in 'LossConfig'"):
        loss_terms({**LOSSES, "weights": {"reconstruction": 1.0}})
    with pytest.raises(ConfigError, match="loss.terms.edge: expected a mapping with _target_"):
        loss_terms({"terms": {**LOSSES["terms"], "edge": 1.0}})


def test_each_term_keeps_its_weight_phase_and_module_in_config_order() -> None:
    terms = loss_terms(
        {"terms": {**LOSSES["terms"], "perceptual": {**LOSSES["terms"]["perceptual"], "weight": 0}}}
    )
    assert list(terms) == ["reconstruction", "perceptual"]
    assert (terms["reconstruction"].weight, terms["reconstruction"].after_warmup) == (1.0, False)
    assert (terms["perceptual"].weight, terms["perceptual"].after_warmup) == (0.0, True)
    assert terms["perceptual"].module == {"_target_": "ttsr_lightning.losses.PerceptualLoss"}


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
        (
            {"study": "miniature", "data": {"name": "cufed5"}},
            r"\+scale=miniature must come after \+experiment=.*its data is data=sample, or data=photos",
        ),
    ],
)
def test_run_keys(run: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_run_config({"trainer": {}, "optim": {}, **run})


def test_the_miniature_scale_is_accepted_with_the_sample_or_your_photos() -> None:
    for data in ("sample", "photos"):
        check_run_config({"trainer": {}, "optim": {}, "study": "miniature", "data": {"name": data}})
