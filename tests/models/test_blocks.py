"""Residual blocks, SFE, the single-path image tail and the in-network bicubic upsampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ttsr_lightning.models import SFE, ImageTail, ResBlock
from ttsr_lightning.models.blocks import bicubic_upsample, res_blocks


def test_res_block_is_identity_plus_residual() -> None:
    block = ResBlock(8)
    x = torch.randn(2, 8, 5, 7)
    expected = x + block.conv2(F.relu(block.conv1(x)))
    torch.testing.assert_close(block(x), expected)
    for tensor in block.conv2.parameters():
        torch.nn.init.zeros_(tensor)
    torch.testing.assert_close(block(x), x)


def test_res_blocks_keys_and_empty_chain() -> None:
    assert "1.conv2.weight" in res_blocks(2, 4).state_dict()
    x = torch.randn(1, 4, 3, 3)
    assert torch.equal(res_blocks(0, 4)(x), x)


def test_sfe_shape_and_parameters() -> None:
    sfe = SFE(num_blocks=16, n_feats=64)
    assert sfe(torch.rand(2, 3, 10, 12) * 2 - 1).shape == (2, 64, 10, 12)
    assert sum(p.numel() for p in sfe.parameters()) == 1_220_416  # official count


def test_image_tail_clamps_to_image_range() -> None:
    tail = ImageTail(16)
    out = tail(torch.randn(2, 16, 9, 11) * 100)
    assert out.shape == (2, 3, 9, 11)
    assert out.min() == -1 and out.max() == 1  # large inputs saturate both ends
    assert sum(p.numel() for p in tail.parameters()) == 16 * 8 * 9 + 8 + 8 * 3 + 3


def test_bicubic_upsample_is_torch_bicubic() -> None:
    x = torch.randn(1, 2, 4, 5)
    out = bicubic_upsample(x, 4)
    assert out.shape == (1, 2, 16, 20)
    torch.testing.assert_close(out, F.interpolate(x, size=(16, 20), mode="bicubic", align_corners=False))
