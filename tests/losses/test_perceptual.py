"""Perceptual loss with a random VGG19: shapes, zero at identity, gradients only on the SR side."""

from __future__ import annotations

import pytest
import torch

from ttsr_lightning.losses import PerceptualLoss


@pytest.fixture(scope="module")
def loss() -> PerceptualLoss:
    torch.manual_seed(0)
    return PerceptualLoss(vgg_weights="random")


def _image(seed: int, size: int = 32) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_features_are_relu5_1(loss: PerceptualLoss) -> None:
    features = loss.features(_image(0))
    assert features.shape == (2, 512, 2, 2)  # 1/16 resolution
    assert (features >= 0).all()
    assert len(loss.vgg.features) == 30 and isinstance(loss.vgg.features[-1], torch.nn.ReLU)


def test_is_zero_for_identical_images_and_positive_otherwise(loss: PerceptualLoss) -> None:
    hr = _image(1)
    assert loss(hr, hr).item() == 0.0
    assert loss(_image(2), hr).item() > 0.0


def test_gradients_reach_sr_only_and_the_vgg_stays_frozen(loss: PerceptualLoss) -> None:
    sr, hr = _image(3).requires_grad_(), _image(4).requires_grad_()
    loss(sr, hr).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert hr.grad is None
    assert all(not parameter.requires_grad and parameter.grad is None for parameter in loss.parameters())


def test_precomputed_hr_features_give_the_same_loss(loss: PerceptualLoss) -> None:
    sr, hr = _image(5), _image(6)
    hr_features = loss.target_features(hr)
    assert not hr_features.requires_grad
    assert torch.equal(loss(sr, hr_features=hr_features), loss(sr, hr))


def test_needs_exactly_one_target(loss: PerceptualLoss) -> None:
    sr = _image(7)
    with pytest.raises(ValueError, match="neither"):
        loss(sr)
    with pytest.raises(ValueError, match="not both"):
        loss(sr, sr, hr_features=loss.target_features(sr))
