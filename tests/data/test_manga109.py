"""Manga109: a seeded random other HR image as reference, or the LR input; the policy is exposed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from ttsr_lightning.data import DatasetLayoutError, Manga109Dataset
from ttsr_lightning.data.preprocessing import to_tensor
from ttsr_lightning.data.seeding import reference_generator


def test_random_hr_reference_is_another_image_drawn_with_the_seed(
    image_folder: Callable[[str, int], Path],
) -> None:
    root = image_folder("Manga109", 5)
    dataset = Manga109Dataset(root, seed=2)
    assert dataset.reference_policy == "random_hr(seed=2)"
    names = [item.name for item in dataset.items]
    for index, item in enumerate(dataset.items):
        other = int(reference_generator(2, index).integers(4))
        assert item.ref_name == names[other + (other >= index)] != item.name
    assert len({tuple(i.ref_name for i in Manga109Dataset(root, seed=s).items) for s in range(5)}) > 1
    first = dataset[0]
    assert torch.equal(first["ref"], to_tensor(Image.open(root / f"{first['ref_name']}.png")))


def test_lr_reference_option(image_folder: Callable[[str, int], Path]) -> None:
    dataset = Manga109Dataset(image_folder("Manga109", 2), reference="lr")
    item = dataset[1]
    assert dataset.reference_policy == "LR" and item["ref_name"] == "LR"
    assert torch.equal(item["ref"], item["lr"][:, :16, :20])


def test_random_hr_needs_two_images(image_folder: Callable[[str, int], Path]) -> None:
    with pytest.raises(DatasetLayoutError, match="one image only; reference 'random_hr' needs at least two"):
        Manga109Dataset(image_folder("Manga109", 1))


def test_unknown_policy_is_refused(image_folder: Callable[[str, int], Path]) -> None:
    with pytest.raises(ValueError, match=r"Manga109 reference must be one of \('random_hr', 'lr'\)"):
        Manga109Dataset(image_folder("Manga109", 2), reference="paper")
