"""CUFED training set: layout validation at construction, image-level errors when read, crops."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from ttsr_lightning.data import CUFEDTrainDataset, DatasetLayoutError, ImageError, find_cufed_pairs
from ttsr_lightning.data.preprocessing import to_tensor

Photo = Callable[[str, int, int, int, int], Image.Image]


def test_items_have_the_documented_shapes_and_range(cufed_train: Path) -> None:
    dataset = CUFEDTrainDataset(cufed_train)
    assert len(dataset) == 4
    item = dataset[(1, 3)]
    shapes = {key: tuple(value.shape) for key, value in item.items()}
    assert shapes == {
        "lr": (3, 40, 40),
        "lr_up": (3, 160, 160),
        "hr": (3, 160, 160),
        "ref": (3, 160, 160),
        "ref_down_up": (3, 160, 160),
    }
    assert all(
        value.dtype == torch.float32 and value.min() >= -1 and value.max() <= 1 for value in item.values()
    )


def test_pairs_are_sorted_and_matched_by_name(cufed_train: Path) -> None:
    pairs = find_cufed_pairs(cufed_train)
    assert [(pair.input.name, pair.ref.name) for pair in pairs] == [(f"{i:06d}.png",) * 2 for i in range(4)]


def test_missing_folders_are_named(tmp_path: Path, cufed_train: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"nowhere: folder not found"):
        CUFEDTrainDataset(tmp_path / "nowhere")
    with pytest.raises(
        DatasetLayoutError, match=r"CUFED/input: folder not found.*\n.*CUFED/ref: folder not found"
    ):
        CUFEDTrainDataset(cufed_train.parent)  # CUFED/ instead of CUFED/train/
    with pytest.raises(DatasetLayoutError, match=r"hint: .*CUFED/train holds input/"):
        CUFEDTrainDataset(cufed_train.parent)


def test_differing_file_names_are_refused_naming_the_first_mismatch(cufed_train: Path) -> None:
    (cufed_train / "ref" / "000001.png").rename(cufed_train / "ref" / "000001b.png")
    with pytest.raises(DatasetLayoutError) as caught:
        CUFEDTrainDataset(cufed_train)
    assert "differ first at" in str(caught.value)
    assert "input/000001.png vs" in str(caught.value) and "ref/000001b.png" in str(caught.value)


def test_differing_counts_are_refused_naming_the_unpaired_file(cufed_train: Path) -> None:
    (cufed_train / "ref" / "000003.png").unlink()
    with pytest.raises(DatasetLayoutError) as caught:
        CUFEDTrainDataset(cufed_train)
    message = str(caught.value)
    assert "has 4 images but" in message and "has 3" in message
    assert "first unpaired file: " in message and "input/000003.png" in message


def test_hr_smaller_than_the_patch_is_an_error_naming_the_file(cufed_train: Path, photo: Photo) -> None:
    photo("coffee", 0, 0, 150, 160).save(cufed_train / "input" / "000001.png")
    dataset = CUFEDTrainDataset(cufed_train)  # the tree is fine: sizes are checked when read
    with pytest.raises(
        ImageError, match=r"input/000001\.png: HR .* is 160x150 px .*expected at least 160x160"
    ):
        dataset[1]
    assert dataset[0]["hr"].shape == (3, 160, 160)


def test_unreadable_image_is_an_error_when_read(cufed_train: Path) -> None:
    (cufed_train / "ref" / "000002.png").write_bytes(b"\x89PNG broken")
    dataset = CUFEDTrainDataset(cufed_train)
    with pytest.raises(ImageError, match=r"ref/000002\.png: cannot decode image"):
        dataset[2]


def crop_positions(source: torch.Tensor, crop: torch.Tensor) -> list[tuple[int, int]]:
    """Every (top, left) where ``crop`` (3, h, w) sits exactly inside ``source`` (3, H, W)."""
    (_, height, width), (_, h, w) = source.shape, crop.shape
    corner_matches = (
        (source[:, : height - h + 1, : width - w + 1] == crop[:, :1, :1]).all(0).nonzero().tolist()
    )
    return [
        (top, left)
        for top, left in corner_matches
        if torch.equal(source[:, top : top + h, left : left + w], crop)
    ]


def test_larger_hr_and_reference_are_cropped_at_a_seeded_position(cufed_train: Path, photo: Photo) -> None:
    big_hr, big_ref = photo("astronaut", 0, 0, 200, 190), photo("astronaut", 100, 100, 170, 300)
    big_hr.save(cufed_train / "input" / "000000.png")
    big_ref.save(cufed_train / "ref" / "000000.png")
    dataset = CUFEDTrainDataset(cufed_train, augment=False, seed=3)
    item = dataset[(2, 0)]
    assert len(crop_positions(to_tensor(big_hr), item["hr"])) == 1
    assert len(crop_positions(to_tensor(big_ref), item["ref"])) == 1  # 160x160 out of 300x170: no padding
    assert torch.equal(item["hr"], dataset[(2, 0)]["hr"])
    positions = {crop_positions(to_tensor(big_hr), dataset[(epoch, 0)]["hr"])[0] for epoch in range(8)}
    assert len(positions) > 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"patch_size": 150}, "patch_size"),
        ({"patch_size": 0}, "patch_size"),
        ({"seed": -1}, "seed must be >= 0"),
    ],
)
def test_bad_arguments_are_refused(cufed_train: Path, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CUFEDTrainDataset(cufed_train, **arguments)
