"""VGG19Features follows torchvision's vgg19().features layout; ImageNetNormalize maps [-1, 1] images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ttsr_lightning import pretrained
from ttsr_lightning.models import ImageNetNormalize, VGG19Features
from ttsr_lightning.models.vgg19 import IMAGENET_MEAN, IMAGENET_STD
from ttsr_lightning.pretrained import sha256_of_file

# torchvision's vgg19().features: index -> (out, in) channels of each 3x3 conv (written out by hand).
TORCHVISION_CONVS = {
    0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256), 14: (256, 256),
    16: (256, 256), 19: (512, 256), 21: (512, 512), 23: (512, 512), 25: (512, 512), 28: (512, 512),
    30: (512, 512), 32: (512, 512), 34: (512, 512),
}  # fmt: skip
TORCHVISION_POOLS = (4, 9, 18, 27, 36)


def test_full_stack_matches_torchvision_layout() -> None:
    features = VGG19Features(37).features
    assert len(features) == 37
    for index, layer in enumerate(features):
        if index in TORCHVISION_CONVS:
            assert isinstance(layer, torch.nn.Conv2d)
            assert (layer.out_channels, layer.in_channels) == TORCHVISION_CONVS[index]
            assert layer.kernel_size == (3, 3) and layer.padding == (1, 1)
        elif index in TORCHVISION_POOLS:
            assert isinstance(layer, torch.nn.MaxPool2d)
        else:
            assert isinstance(layer, torch.nn.ReLU)
    assert sum(p.numel() for p in features.parameters()) == 20_024_384


@pytest.mark.parametrize(
    ("num_layers", "channels", "stride", "parameters"), [(12, 256, 4, 555_328), (30, 512, 16, 12_944_960)]
)
def test_lte_and_perceptual_slices(num_layers: int, channels: int, stride: int, parameters: int) -> None:
    vgg = VGG19Features(num_layers)
    out = vgg(torch.randn(2, 3, 32, 48))
    assert out.shape == (2, channels, 32 // stride, 48 // stride)
    assert out.min() >= 0  # both slices end on a ReLU
    assert sum(p.numel() for p in vgg.parameters()) == parameters


def torchvision_state_dict(num_layers: int = 14) -> dict[str, torch.Tensor]:
    """Random torchvision-layout VGG19 entries of the first ``num_layers`` layers, plus a classifier one."""
    state_dict = {}
    for index, (out_channels, in_channels) in TORCHVISION_CONVS.items():
        if index >= num_layers:
            break
        state_dict[f"features.{index}.weight"] = torch.randn(out_channels, in_channels, 3, 3)
        state_dict[f"features.{index}.bias"] = torch.randn(out_channels)
    state_dict["classifier.0.bias"] = torch.randn(4096)
    return state_dict


def test_torchvision_state_dict_loads_by_key() -> None:
    state_dict = torchvision_state_dict()
    vgg = VGG19Features(12)
    vgg.load_torchvision_state_dict(state_dict)  # ignores features.12 and the classifier
    for key, value in vgg.state_dict().items():
        assert torch.equal(value, state_dict[key])


def test_incomplete_state_dict_lists_missing_and_mis_shaped_keys() -> None:
    state_dict = torchvision_state_dict()
    del state_dict["features.7.bias"]
    state_dict["features.2.weight"] = torch.randn(64, 64, 1, 1)
    with pytest.raises(ValueError) as error:
        VGG19Features(12).load_torchvision_state_dict(state_dict)
    assert "features.7.bias" in str(error.value) and "features.2.weight" in str(error.value)


def test_vgg_weights_file_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vgg19.pth"
    state_dict = torchvision_state_dict()
    torch.save(state_dict, path)
    monkeypatch.setattr(pretrained, "VGG19_SHA256", sha256_of_file(path))
    vgg = VGG19Features(12, vgg_weights=path)
    assert torch.equal(vgg.state_dict()["features.10.weight"], state_dict["features.10.weight"])


def test_num_layers_out_of_range() -> None:
    with pytest.raises(ValueError, match="num_layers"):
        VGG19Features(38)


def test_imagenet_normalize_maps_minus_one_to_one_through_unit_range() -> None:
    normalize = ImageNetNormalize()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3).expand(1, 3, 1, 3)
    expected = (torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3) - mean) / std
    torch.testing.assert_close(normalize(x), expected)
    assert list(normalize.parameters()) == [] and normalize.state_dict() == {}
    assert normalize.to(torch.float64)(x.double()).dtype == torch.float64
