"""LTE: official key names, three post-ReLU levels, ImageNet input mapping, freezing, self-containment."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ttsr_lightning.models import LTE
from ttsr_lightning.models.vgg19 import IMAGENET_MEAN, IMAGENET_STD

OFFICIAL_KEYS = {
    f"slice{s}.{i}.{p}" for s, i in [(1, 0), (2, 2), (2, 5), (3, 7), (3, 10)] for p in ("weight", "bias")
}


def test_levels_shapes_and_range() -> None:
    lv1, lv2, lv3 = LTE("random")(torch.rand(2, 3, 32, 44) * 2 - 1)
    assert lv1.shape == (2, 64, 32, 44)
    assert lv2.shape == (2, 128, 16, 22)
    assert lv3.shape == (2, 256, 8, 11)
    assert min(lv1.min(), lv2.min(), lv3.min()) >= 0


def test_state_dict_keys_are_the_official_ones() -> None:
    assert set(LTE("random").state_dict()) == OFFICIAL_KEYS


def test_lv1_is_relu_conv1_1_of_the_imagenet_normalised_unit_image() -> None:
    lte = LTE("random")
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    unit = (x + 1) / 2
    normalised = (unit - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    weight, bias = lte.state_dict()["slice1.0.weight"], lte.state_dict()["slice1.0.bias"]
    torch.testing.assert_close(lte(x)[0], F.relu(F.conv2d(normalised, weight, bias, padding=1)))


def test_requires_grad_switch() -> None:
    assert sum(p.numel() for p in LTE("random").parameters() if p.requires_grad) == 555_328
    assert not any(p.requires_grad for p in LTE("random", requires_grad=False).parameters())


def test_deep_copy_is_an_independent_extractor() -> None:
    lte = LTE("random")
    frozen = copy.deepcopy(lte).requires_grad_(False)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    before = frozen(x)[2]
    torch.testing.assert_close(before, lte(x)[2], rtol=0, atol=0)
    lte.state_dict()["slice3.10.bias"].add_(1.0)  # state-dict tensors share the parameters' storage
    torch.testing.assert_close(frozen(x)[2], before, rtol=0, atol=0)
    assert all(p.requires_grad for p in lte.parameters())
