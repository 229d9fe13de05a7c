"""Urban100: a folder of HR images, each its own (LR) reference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from ttsr_lightning.data import DatasetLayoutError, ImageError, Urban100Dataset


def test_lr_input_is_the_reference(image_folder: Callable[[str, int], Path]) -> None:
    dataset = Urban100Dataset(image_folder("Urban100", 3))
    assert len(dataset) == 3 and dataset.reference_policy == "LR"
    item = dataset[2]
    assert item["name"] == "img_003" and item["ref_name"] == "LR"
    assert item["hr"].shape == (3, 64, 88) and item["lr"].shape == (3, 16, 22)
    assert torch.equal(item["ref"], item["lr"][:, :16, :20])  # cropped to multiples of 4


def test_pattern_selects_the_hr_files_of_the_selfexsr_archive(
    image_folder: Callable[[str, int], Path],
) -> None:
    root = image_folder("image_SRF_4", 2)
    for path in sorted(root.iterdir()):
        path.rename(root / f"{path.stem}_SRF_4_HR.png")
        (root / f"{path.stem}_SRF_4_LR.png").write_bytes(b"")  # must not be read
    dataset = Urban100Dataset(root, pattern="*_HR.png")
    assert [item.name for item in dataset.items] == ["img_001_SRF_4_HR", "img_002_SRF_4_HR"]
    assert dataset[1]["hr"].shape == (3, 64, 88)


def test_missing_or_empty_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetLayoutError, match=r"Urban100: folder not found; expected the Urban100 HR images"
    ):
        Urban100Dataset(tmp_path / "Urban100")
    with pytest.raises(DatasetLayoutError, match=r"no images match '\*\.png'"):
        Urban100Dataset(tmp_path)


def test_an_hr_too_small_for_its_own_reference_is_named(tmp_path: Path) -> None:
    Image.new("RGB", (40, 12)).save(tmp_path / "tiny.png")  # LR 10x3: nothing left after the crop
    with pytest.raises(ImageError, match=r"tiny\.png: LR \(used as reference\) is 10x3 px"):
        Urban100Dataset(tmp_path)[0]
