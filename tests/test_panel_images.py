"""Image panels: tiles, sizes, the official rounding and the attention heat map."""

from __future__ import annotations

import numpy as np
import torch

from ttsr_lightning.panel_images import heatmap, make_panel, to_uint8_image


def test_to_uint8_rounds_like_the_official_evaluation() -> None:
    image = torch.tensor([-1.0, 0.0, 1.0, 0.5 / 127.5 - 1]).reshape(1, 2, 2).expand(3, 2, 2)
    assert to_uint8_image(image)[..., 0].tolist() == [
        [0, 128],
        [255, 0],
    ]  # 127.5 -> 128, 0.5 -> 0 (half-even)


def test_panel_has_five_tiles_at_hr_height() -> None:
    hr = torch.rand(3, 48, 64) * 2 - 1
    ref = torch.rand(3, 24, 40) * 2 - 1  # scaled to the HR height: 48 x 80
    panel = make_panel(hr, ref, hr, hr, torch.rand(1, 12, 16), gap=4)
    assert panel.shape == (48, 64 + 80 + 64 + 64 + 64 + 4 * 4, 3) and panel.dtype == np.uint8
    assert np.array_equal(panel[:, :64], to_uint8_image(hr))
    assert (panel[:, 64:68] == 255).all()  # white gap


def test_panel_without_texture_transfer_has_four_tiles() -> None:
    hr = torch.zeros(3, 16, 16)
    assert make_panel(hr, hr, hr, hr, None, gap=2).shape == (16, 4 * 16 + 3 * 2, 3)


def test_heatmap_is_nearest_upsampled_and_monotonic() -> None:
    values = torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]])
    colours = heatmap(values, (4, 10))
    assert colours.shape == (4, 10, 3)
    for column in range(5):  # each value fills its own 4x2 block, nothing blended
        block = colours[:, 2 * column : 2 * column + 2].reshape(-1, 3)
        assert (block == block[0]).all(), column
    # a larger value, a brighter colour (viridis' lightness rises from dark blue to yellow)
    brightness = colours[0, ::2].astype(float) @ np.array([0.299, 0.587, 0.114])
    assert (np.diff(brightness) > 0).all(), brightness


def test_transfer_panel_shows_where_the_reference_changed_the_sr() -> None:
    from ttsr_lightning.panel_images import make_transfer_panel

    hr = torch.rand(3, 32, 48) * 2 - 1
    without = hr.clone()
    with_reference = hr.clone()
    with_reference[:, :16, :24] += 0.5  # the reference changed the top-left quarter only
    panel = make_transfer_panel(hr, without, with_reference, hr, torch.rand(3, 16, 16) * 2 - 1, gap=4)
    assert panel.shape == (32, 5 * 48 + 32 + 5 * 4, 3)
    assert np.array_equal(panel[:, 52:100], to_uint8_image(without))
    assert np.array_equal(panel[:, 104:152], to_uint8_image(with_reference))
    added = panel[:, -48:].astype(int)
    changed, unchanged = added[:16, :24], added[16:, 24:]
    assert (changed == changed[0, 0]).all() and (unchanged == unchanged[0, 0]).all()
    assert changed.sum() > 3 * unchanged.sum()  # bright where the reference added, dark elsewhere
