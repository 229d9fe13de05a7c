"""WR-SR: C2-Matching's 80 web images with one reference each (input/NNN.png, ref/NNN_ref.png)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from ttsr_lightning.data import DatasetLayoutError, WRSRDataset
from ttsr_lightning.data.eval_sets import build_eval_set, eval_set_name
from ttsr_lightning.data.prepare import check
from ttsr_lightning.data.preprocessing import to_tensor

Photo = Callable[[str, int, int, int, int], Image.Image]


@pytest.fixture
def wrsr(tmp_path: Path, photo: Photo) -> Path:
    root = tmp_path / "WR-SR"
    (root / "input").mkdir(parents=True)
    (root / "ref").mkdir()
    for index, name in enumerate(("astronaut", "coffee", "chelsea"), start=1):
        photo(name, 40, 60, 90, 130).save(root / "input" / f"{index:03d}.png")
        photo(name, 10, 20, 70 + index, 100).save(root / "ref" / f"{index:03d}_ref.png")
    return root


def test_each_input_pairs_with_its_ref_file(wrsr: Path) -> None:
    dataset = WRSRDataset(wrsr)
    assert [item.name for item in dataset.items] == ["001", "002", "003"]
    assert [item.ref_name for item in dataset.items] == ["001_ref", "002_ref", "003_ref"]
    item = dataset[2]
    reference = Image.open(wrsr / "ref" / "003_ref.png").convert("RGB")
    assert torch.equal(item["ref"], to_tensor(reference.crop((0, 0, 100, 72))))  # cropped to multiples of 4
    assert item["hr"].shape == (3, 88, 128) and dataset.reference_policy == "paired"
    spec = {"dataset": "wrsr", "root": str(wrsr)}
    assert eval_set_name(spec) == "WR-SR" and len(build_eval_set(spec)) == 3


def test_missing_and_orphan_references_are_listed(wrsr: Path) -> None:
    (wrsr / "ref" / "002_ref.png").rename(wrsr / "ref" / "009_ref.png")
    with pytest.raises(DatasetLayoutError) as error:
        WRSRDataset(wrsr)
    assert error.value.problems == [
        f"{wrsr / 'ref'}: no 002_ref.png for 002.png",
        f"{wrsr / 'ref' / '009_ref.png'}: a reference without its input 009.png",
    ]


def test_prepare_counts_the_80_images(wrsr: Path) -> None:
    assert check("wrsr", wrsr, expected=3) == []
    assert check("wrsr", wrsr, expected=80) == [
        f"{wrsr}: found 3 images; expected 80 (is the download complete?)"
    ]
