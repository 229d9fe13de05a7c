"""MainNet: shapes for every switch, official parameter counts, what S and T do, input validation."""

from __future__ import annotations

import pytest
import torch

from ttsr_lightning.models import MainNet


def count(module: torch.nn.Module | None) -> int:
    assert module is not None
    return sum(p.numel() for p in module.parameters())


def textures(batch: int, height: int, width: int) -> dict[str, torch.Tensor]:
    return {
        "soft_attention": torch.rand(batch, 1, height, width),
        "t_lv3": torch.rand(batch, 256, height, width),
        "t_lv2": torch.rand(batch, 128, 2 * height, 2 * width),
        "t_lv1": torch.rand(batch, 64, 4 * height, 4 * width),
    }


def small(**switches: bool) -> MainNet:
    return MainNet(8, (1, 1, 1, 1), **switches)


@pytest.mark.parametrize("csfi", [True, False])
@pytest.mark.parametrize(
    ("use_hard_attention", "use_soft_attention"), [(True, True), (True, False), (False, False)]
)
def test_output_shape_and_range(csfi: bool, use_hard_attention: bool, use_soft_attention: bool) -> None:
    net = small(use_hard_attention=use_hard_attention, use_soft_attention=use_soft_attention, csfi=csfi)
    inputs = textures(2, 5, 7)
    if not use_soft_attention:
        del inputs["soft_attention"]
    if not use_hard_attention:
        inputs = {}
    sr = net(torch.rand(2, 3, 5, 7) * 2 - 1, **inputs)
    assert sr.shape == (2, 3, 20, 28)
    assert sr.min() >= -1 and sr.max() <= 1


@pytest.mark.parametrize(("n_feats", "csfi_count", "single_path_count"), [
    (64, 6_174_275, 4_081_987), (80, 9_562_963, 6_294_803), (96, 13_689_699, 8_984_547),
])  # fmt: skip
def test_parameter_counts(n_feats: int, csfi_count: int, single_path_count: int) -> None:
    assert count(MainNet(n_feats)) == csfi_count  # official MainNet
    assert count(MainNet(n_feats, csfi=False)) == single_path_count  # MainNet with the CSFI blocks left out


def test_official_part_counts_at_64_channels() -> None:
    net = MainNet()
    expected = {
        "SFE": 1_220_416, "conv11_head": 184_384, "RB11": 1_181_696, "conv12": 147_712, "conv23": 147_712,
        "conv22_head": 110_656, "conv33_head": 73_792, "ex12": 188_672, "ex123": 492_160, "RB21": 590_848,
        "RB22": 590_848, "RB31": 295_424, "RB32": 295_424, "RB33": 295_424, "conv11_tail": 36_928,
        "conv33_tail": 36_928, "merge_tail": 137_539,
    }  # fmt: skip
    assert {name: count(net.get_submodule(name)) for name in expected} == expected


def test_base_has_no_fusion_heads() -> None:
    net = small(use_hard_attention=False, use_soft_attention=False)
    assert net.conv11_head is None and net.conv22_head is None and net.conv33_head is None
    assert not any(key.startswith(("conv11_head", "conv22_head", "conv33_head")) for key in net.state_dict())


def test_zero_soft_attention_blocks_the_textures() -> None:
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 4, 4) * 2 - 1
    inputs, other = textures(1, 4, 4), textures(1, 4, 4)
    soft = small()
    inputs["soft_attention"] = other["soft_attention"] = torch.zeros(1, 1, 4, 4)
    torch.testing.assert_close(soft(lr, **inputs), soft(lr, **other), rtol=0, atol=0)

    hard_only = small(use_soft_attention=False)
    del inputs["soft_attention"], other["soft_attention"]
    assert not torch.allclose(hard_only(lr, **inputs), hard_only(lr, **other))


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="use_hard_attention"):
        small(use_hard_attention=False, use_soft_attention=True)
    with pytest.raises(ValueError, match="num_res_blocks"):
        MainNet(8, (1, 1, 1))
    with pytest.raises(ValueError, match="n_feats"):
        MainNet(1)


def test_forward_names_missing_and_unexpected_inputs() -> None:
    lr = torch.zeros(1, 3, 4, 4)
    inputs = textures(1, 4, 4)
    del inputs["t_lv2"]
    with pytest.raises(ValueError, match="t_lv2 missing"):
        small()(lr, **inputs)
    with pytest.raises(ValueError, match="soft_attention given"):
        small(use_soft_attention=False)(lr, **textures(1, 4, 4))
