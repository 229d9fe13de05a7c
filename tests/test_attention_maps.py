"""Attention pictures: position colour key, hard-attention correspondences, the side-by-side panel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import colormaps

from ttsr_lightning.attention_maps import (
    REF_KEY_OPACITY,
    attention_panel,
    correspondence_picture,
    position_colours,
    ref_colour_key,
)
from ttsr_lightning.panel_images import to_uint8_image


def test_position_colours_give_every_position_its_own_colour() -> None:
    colours = position_colours(3, 5)
    assert colours.shape == (3, 5, 3) and colours.dtype == np.uint8
    assert colours[0, 0].tolist() == [0, 0, 255]  # top-left blue
    assert colours[0, -1].tolist() == [255, 0, 0]  # top-right red
    assert colours[-1, 0].tolist() == [0, 255, 255]  # bottom-left cyan
    assert colours[-1, -1].tolist() == [255, 255, 0]  # bottom-right yellow
    assert colours[1, 2].tolist() == [128, 128, 128]  # the centre: x = y = 1/2
    assert len({tuple(c) for c in colours.reshape(-1, 3)}) == 15
    assert position_colours(1, 1).tolist() == [[[0, 0, 255]]]


def test_correspondences_paint_each_lr_position_with_its_ref_source() -> None:
    ref_colours = position_colours(2, 3)
    # LR 2x2: positions take Ref (0, 0), (1, 2), (0, 1), (1, 2) (row-major indices 0, 5, 1, 5)
    picture = correspondence_picture(torch.tensor([0, 5, 1, 5]), lr_size=(2, 2), ref_size=(2, 3))
    assert picture.shape == (2, 2, 3)
    np.testing.assert_array_equal(picture[0, 0], ref_colours[0, 0])
    np.testing.assert_array_equal(picture[0, 1], ref_colours[1, 2])
    np.testing.assert_array_equal(picture[1, 0], ref_colours[0, 1])
    np.testing.assert_array_equal(picture[1, 1], ref_colours[1, 2])


def test_correspondences_reject_indices_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match=r"hard_index must be \(4,\) for an LR of 2x2"):
        correspondence_picture(torch.tensor([0, 1, 2]), (2, 2), (2, 3))
    with pytest.raises(ValueError, match=r"hard_index must lie in \[0, 6\)"):
        correspondence_picture(torch.tensor([0, 1, 2, 6]), (2, 2), (2, 3))


def test_ref_colour_key_blends_ref_and_key() -> None:
    ref = torch.zeros(3, 8, 12)  # mid grey: 127.5 -> 128 after rounding
    key = ref_colour_key(ref)
    assert key.shape == (8, 12, 3)
    expected_top_left = REF_KEY_OPACITY * 128 + (1 - REF_KEY_OPACITY) * np.array([0, 0, 255])
    np.testing.assert_array_equal(
        key[:4, :4].reshape(-1, 3), np.broadcast_to(expected_top_left.round(), (16, 3))
    )


def test_attention_panel_places_sr_soft_and_hard_attention_and_ref_key_side_by_side() -> None:
    torch.manual_seed(0)
    sr = torch.rand(3, 12, 20) * 2 - 1  # LR 3x5
    ref = torch.rand(3, 8, 12) * 2 - 1  # Ref lv3 grid 2x3
    soft_attention = torch.ones(1, 3, 5)
    hard_index = torch.randint(0, 6, (15,))
    panel = attention_panel(sr, ref, soft_attention, hard_index, gap=4)
    key_width = round(12 * 12 / 8)  # the Ref scaled to the SR height
    assert panel.shape == (12, 3 * 20 + key_width + 3 * 4, 3)
    np.testing.assert_array_equal(panel[:, :20], to_uint8_image(sr))
    assert (panel[:, 20:24] == 255).all()  # the gap
    top_colour = (np.array(colormaps["viridis"](1.0)[:3]) * 255).round()
    np.testing.assert_array_equal(panel[:, 24:44].reshape(-1, 3), np.broadcast_to(top_colour, (240, 3)))
    correspondences = correspondence_picture(hard_index, (3, 5), (2, 3))
    np.testing.assert_array_equal(panel[:, 48:68], correspondences.repeat(4, axis=0).repeat(4, axis=1))


def test_attention_panel_rejects_a_soft_attention_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match=r"soft_attention must be \(1, 3, 5\) for an SR of 12x20"):
        attention_panel(torch.zeros(3, 12, 20), torch.zeros(3, 8, 8), torch.ones(1, 4, 5), torch.zeros(15))
