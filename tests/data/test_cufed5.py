"""CUFED5: each reference level, LR as reference, stitched references, layout errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ttsr_lightning.data import CUFED5Dataset, DatasetLayoutError, ImageError
from ttsr_lightning.data.preprocessing import to_tensor

Photo = Callable[[str, int, int, int, int], Image.Image]


def cropped_to_4(path: Path) -> torch.Tensor:
    image = Image.open(path).convert("RGB")
    return to_tensor(image.crop((0, 0, image.width // 4 * 4, image.height // 4 * 4)))


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_level_k_uses_file_k_cropped_to_multiples_of_4(cufed5: Path, level: int) -> None:
    dataset = CUFED5Dataset(cufed5, ref_level=level)
    assert len(dataset) == 2 and dataset.reference_policy == f"L{level}"
    item = dataset[1]
    assert (item["name"], item["ref_name"]) == ("001_0", f"001_{level}")
    assert torch.equal(item["ref"], cropped_to_4(cufed5 / f"001_{level}.png"))
    assert torch.equal(item["hr"], cropped_to_4(cufed5 / "001_0.png"))
    assert item["hr"].shape == (3, 88, 128) and item["lr"].shape == (3, 22, 32)


def test_lr_level_uses_the_lr_input_itself_as_reference(cufed5: Path) -> None:
    dataset = CUFED5Dataset(cufed5, ref_level="lr")
    item = dataset[0]
    assert dataset.reference_policy == "LR" and item["ref_name"] == "LR"
    # LR is 32x22 (from the 128x88 HR crop); as a reference it is cropped to 32x20.
    assert item["ref"].shape == (3, 20, 32)
    assert torch.equal(item["ref"], item["lr"][:, :20, :32])
    lr = Image.fromarray(((item["ref"] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())
    down_up = lr.resize((8, 5), Image.Resampling.BICUBIC).resize((32, 20), Image.Resampling.BICUBIC)
    assert torch.equal(item["ref_down_up"], to_tensor(down_up))


def test_stitched_references_are_five_black_canvases_stacked_vertically(cufed5: Path) -> None:
    dataset = CUFED5Dataset(cufed5, ref_level="stitched", stitch_canvas=120)
    item = dataset[0]
    assert dataset.reference_policy == "stitched(120)"
    assert item["ref_name"] == "000_1+000_2+000_3+000_4+000_5"
    assert item["ref"].shape == item["ref_down_up"].shape == (3, 600, 120)
    for level in range(1, 6):
        ref = to_tensor(Image.open(cufed5 / f"000_{level}.png"))
        _, height, width = ref.shape
        canvas = item["ref"][:, 120 * (level - 1) : 120 * level]
        assert torch.equal(canvas[:, :height, :width], ref), level
        assert canvas[:, height:].eq(-1).all() and canvas[:, :, width:].eq(-1).all(), level


def test_default_stitch_canvas_is_500_giving_2500x500(cufed5: Path) -> None:
    assert CUFED5Dataset(cufed5, ref_level="stitched")[1]["ref"].shape == (3, 2500, 500)


def test_stitching_a_reference_larger_than_the_canvas_names_it(cufed5: Path) -> None:
    dataset = CUFED5Dataset(cufed5, ref_level="stitched", stitch_canvas=100)
    with pytest.raises(ImageError, match=r"000_1\.png: reference is 105x76 px; expected at most 100x100"):
        dataset[0]


def test_a_group_missing_references_is_named(cufed5: Path) -> None:
    (cufed5 / "001_2.png").unlink()
    (cufed5 / "001_4.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"group 001 lacks 001_2, 001_4"):
        CUFED5Dataset(cufed5, ref_level=1)  # strict even when level 1 would not read them


def test_a_reference_without_its_hr_is_named(cufed5: Path, photo: Photo) -> None:
    photo("coffee", 0, 0, 40, 40).save(cufed5 / "007_3.png")
    with pytest.raises(DatasetLayoutError, match=r"group 007 lacks 007_0, 007_1, 007_2, 007_4, 007_5"):
        CUFED5Dataset(cufed5)


def test_stray_image_files_are_refused(cufed5: Path, photo: Photo) -> None:
    photo("coffee", 0, 0, 40, 40).save(cufed5 / "000_0 copy.png")
    with pytest.raises(DatasetLayoutError, match=r"000_0 copy\.png: unexpected file"):
        CUFED5Dataset(cufed5)


def test_missing_or_empty_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"CUFED5: folder not found"):
        CUFED5Dataset(tmp_path / "CUFED5")
    with pytest.raises(DatasetLayoutError, match=r"no images found; expected NNN_0\.png"):
        CUFED5Dataset(tmp_path)


def test_grayscale_reference_is_converted(cufed5: Path) -> None:
    gray = Image.open(cufed5 / "000_1.png").convert("L")
    gray.save(cufed5 / "000_1.png")
    ref = CUFED5Dataset(cufed5)[0]["ref"]
    assert torch.equal(ref[0], ref[1]) and torch.equal(ref[1], ref[2])
    assert torch.equal(ref[0], to_tensor(gray.convert("RGB"))[0, : ref.shape[1], : ref.shape[2]])


@pytest.mark.parametrize("level", [0, 6, "L1", "hr", True, 1.5])
def test_unknown_levels_are_refused(cufed5: Path, level: object) -> None:
    with pytest.raises(ValueError, match="ref_level must be one of 1, 2, 3, 4, 5, 'lr', 'stitched'"):
        CUFED5Dataset(cufed5, ref_level=level)  # type: ignore[arg-type]


def test_stitch_canvas_must_be_a_multiple_of_4(cufed5: Path) -> None:
    with pytest.raises(ValueError, match="stitch_canvas must be a positive multiple of 4"):
        CUFED5Dataset(cufed5, ref_level="stitched", stitch_canvas=498)


def test_hr_and_lr_up_are_four_times_the_lr(cufed5: Path) -> None:
    dataset = CUFED5Dataset(cufed5, ref_level=5)
    for item in (dataset[index] for index in range(len(dataset))):
        assert item["lr_up"].shape[1:] == item["hr"].shape[1:] == tuple(4 * np.array(item["lr"].shape[1:]))


def test_all5_serves_the_five_references_as_a_list_each_processed_on_its_own(cufed5: Path) -> None:
    dataset = CUFED5Dataset(cufed5, ref_level="all5")
    item = dataset[1]
    assert dataset.reference_policy == "all5" and item["ref_name"] == "001_1+001_2+001_3+001_4+001_5"
    assert isinstance(item["ref"], list) and len(item["ref"]) == len(item["ref_down_up"]) == 5
    for level, (ref, down_up) in enumerate(zip(item["ref"], item["ref_down_up"], strict=True), start=1):
        assert torch.equal(ref, cropped_to_4(cufed5 / f"001_{level}.png")), level
        assert down_up.shape == ref.shape
    # batches of one keep the list: one (1, 3, Hi, Wi) tensor per reference, sizes differing
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=1)))
    assert [tuple(ref.shape) for ref in batch["ref"]] == [(1, *ref.shape) for ref in item["ref"]]
    assert len({ref.shape for ref in batch["ref"]}) > 1


def test_masa_stitching_replicates_the_edges_around_each_centred_reference(cufed5: Path) -> None:
    dataset = CUFED5Dataset(
        cufed5, ref_level="stitched", stitch_canvas=120, stitch_padding="replicate_centred"
    )
    item = dataset[0]
    assert dataset.reference_policy == "stitched_masa(120)" and item["ref"].shape == (3, 600, 120)
    for level in range(1, 6):
        ref = to_tensor(Image.open(cufed5 / f"000_{level}.png"))
        _, height, width = ref.shape
        top, left = (120 - height) // 2, (120 - width) // 2  # MASA-SR: pad_t = (h_new - h) // 2
        canvas = item["ref"][:, 120 * (level - 1) : 120 * level]
        assert torch.equal(canvas[:, top : top + height, left : left + width], ref), level
        assert torch.equal(canvas[:, 0, left : left + width], ref[:, 0]), level  # the top row repeated
        assert torch.equal(canvas[:, top : top + height, 0], ref[:, :, 0]), level  # the left column repeated


def test_an_unknown_stitch_padding_is_refused(cufed5: Path) -> None:
    with pytest.raises(
        ValueError, match=r"stitch_padding must be one of \['black_top_left', 'replicate_centred'\]"
    ):
        CUFED5Dataset(cufed5, ref_level="stitched", stitch_padding="mirror")
