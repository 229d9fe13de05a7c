"""Sun80: the original archive's layout, seeded random / ranked / named references."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ttsr_lightning.data import DatasetLayoutError, Sun80Dataset
from ttsr_lightning.data.preprocessing import to_tensor
from ttsr_lightning.data.seeding import reference_generator

MATCHES = "Sun_Hays_SR_scenematches"


def test_random_reference_is_drawn_from_seed_and_image_index(sun80: Path) -> None:
    dataset = Sun80Dataset(sun80, seed=5)
    assert [item.name for item in dataset.items] == ["Image_01", "Image_02", "Image_03"]
    assert dataset.reference_policy == "random(seed=5)"
    for index, item in enumerate(dataset.items):
        candidates = dataset.candidates[item.name]
        assert item.refs == (candidates[int(reference_generator(5, index).integers(len(candidates)))],)
    assert [item.refs for item in Sun80Dataset(sun80, seed=5).items] == [item.refs for item in dataset.items]
    picks = {tuple(item.refs for item in Sun80Dataset(sun80, seed=seed).items) for seed in range(6)}
    assert len(picks) > 1


def test_reference_folder_may_be_named_after_the_file_or_its_stem(sun80: Path) -> None:
    dataset = Sun80Dataset(sun80, reference=1)
    assert [item.refs[0].parent.name for item in dataset.items] == [
        "Image_01.jpg",
        "Image_02.jpg",
        "Image_03",
    ]
    assert [item.ref_name for item in dataset.items] == ["match_01"] * 3
    assert dataset.reference_policy == "rank 1"


def test_item_reads_the_chosen_reference(sun80: Path) -> None:
    dataset = Sun80Dataset(
        sun80, reference={"Image_01": "match_02.jpg", "Image_02": "match_00.jpg", "Image_03": "match_01.jpg"}
    )
    item = dataset[0]
    ref = Image.open(sun80 / MATCHES / "Image_01.jpg" / "match_02.jpg")  # 100x80 JPEG
    assert dataset.reference_policy == "named" and item["ref_name"] == "match_02"
    assert torch.equal(item["ref"], to_tensor(ref))
    assert item["hr"].shape == (3, 96, 120) and item["name"] == "Image_01"


def test_rank_beyond_an_images_references_is_named(sun80: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"Image_03: has 2 references; expected at least 3"):
        Sun80Dataset(sun80, reference=2)


def test_named_reference_must_exist(sun80: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"reference 'nope\.jpg' named for Image_01 not found"):
        Sun80Dataset(
            sun80, reference={"Image_01": "nope.jpg", "Image_02": "match_00.jpg", "Image_03": "match_00.jpg"}
        )
    with pytest.raises(DatasetLayoutError, match=r"reference None named for Image_02 not found"):
        Sun80Dataset(sun80, reference={"Image_01": "match_00.jpg"})


def test_missing_or_empty_reference_folders_are_named(sun80: Path) -> None:
    for path in (sun80 / MATCHES / "Image_03").iterdir():
        path.unlink()
    (sun80 / MATCHES / "Image_02.jpg").rename(sun80 / MATCHES / "elsewhere")
    with pytest.raises(DatasetLayoutError) as caught:
        Sun80Dataset(sun80)
    assert "Image_02.jpg: folder not found; expected the references of Image_02.jpg" in str(caught.value)
    assert "Image_03: no images found; expected the references of Image_03.jpg" in str(caught.value)
    assert caught.value.problems and len(caught.value.problems) == 2


def test_missing_top_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"Sun_Hays_SR_groundtruth: folder not found"):
        Sun80Dataset(tmp_path)


@pytest.mark.parametrize("reference", ["first", -1, True])
def test_unknown_reference_choices_are_refused(sun80: Path, reference: object) -> None:
    with pytest.raises(ValueError, match="Sun80 reference"):
        Sun80Dataset(sun80, reference=reference)  # type: ignore[arg-type]


def test_all_serves_every_scene_match_as_a_list_within_a_pixel_budget(sun80: Path) -> None:
    dataset = Sun80Dataset(sun80, reference="all")
    assert dataset.reference_policy == "all(<= 16,000,000 px)"
    assert [len(item.refs) for item in dataset.items] == [3, 4, 2]  # every match of each image
    item = dataset[1]
    assert isinstance(item["ref"], list) and len(item["ref"]) == 4
    assert torch.equal(
        item["ref"][2], to_tensor(Image.open(sun80 / MATCHES / "Image_02.jpg" / "match_02.jpg"))
    )
    # each match is 100x80 = 8,000 px: a budget of 20,000 px keeps the first two (the first always)
    bounded = Sun80Dataset(sun80, reference="all", max_reference_pixels=20_000)
    assert [len(item.refs) for item in bounded.items] == [2, 2, 2]
    assert [
        len(item.refs) for item in Sun80Dataset(sun80, reference="all", max_reference_pixels=1).items
    ] == [1, 1, 1]
    assert bounded.items[0].ref_name == "2 of 3 scene matches"
