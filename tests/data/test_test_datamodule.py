"""TestDataModule: the four test sets on their real layouts, one named loader each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest

from ttsr_lightning.data import TestDataModule


def all_sets(cufed5: Path, sun80: Path, image_folder: Callable[[str, int], Path]) -> list[dict[str, Any]]:
    return [
        {"dataset": "cufed5", "root": str(cufed5), "ref_level": 1},
        {"dataset": "cufed5", "root": str(cufed5), "ref_level": "stitched", "stitch_canvas": 120},
        {"dataset": "sun80", "root": str(sun80), "reference": "random", "seed": 1},
        {"dataset": "urban100", "root": str(image_folder("Urban100", 3))},
        {"dataset": "manga109", "root": str(image_folder("Manga109", 4)), "reference": "random_hr"},
        {
            "dataset": "manga109",
            "root": str(image_folder("Manga109", 4)),
            "reference": "lr",
            "name": "manga_self",
        },
    ]


def test_serves_every_test_set_in_order_with_its_name_and_policy(
    cufed5: Path, sun80: Path, image_folder: Callable[[str, int], Path]
) -> None:
    module = TestDataModule(all_sets(cufed5, sun80, image_folder))
    expected_names = ["CUFED5_L1", "CUFED5_stitched", "Sun80", "Urban100", "Manga109", "manga_self"]
    assert module.test_set_names == expected_names  # known before setup (no file is touched)
    module.setup("test")
    assert module.reference_policies == dict(
        zip(
            expected_names,
            ["L1", "stitched(120)", "random(seed=1)", "LR", "random_hr(seed=0)", "LR"],
            strict=True,
        )
    )
    loaders = module.test_dataloader()
    assert [len(loader) for loader in loaders] == [2, 2, 3, 3, 4, 4]
    firsts = [next(iter(loader)) for loader in loaders]
    assert [batch["name"] for batch in firsts] == [
        ["000_0"],
        ["000_0"],
        ["Image_01"],
        ["img_001"],
        ["img_001"],
        ["img_001"],
    ]
    assert firsts[1]["ref"].shape == (1, 3, 600, 120)
    assert all(
        batch["hr"].shape[0] == 1 and batch["lr"].shape[-1] * 4 == batch["hr"].shape[-1] for batch in firsts
    )


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ([], "data.test.sets is empty"),
        (
            [{"dataset": "cufed5", "root": "a"}, {"dataset": "cufed5", "root": "b", "ref_level": 1}],
            "CUFED5_L1",
        ),
        ([{"root": "a"}], r"data.test.sets\[0\]: expected a mapping with dataset"),
        ([{"dataset": "cufed5", "root": "a", "ref_level": 9}], "ref_level must be one of"),
    ],
)
def test_bad_specs_are_refused_at_construction(sets: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TestDataModule(sets)


def test_unknown_dataset_argument_names_the_spec(cufed5: Path) -> None:
    module = TestDataModule([{"dataset": "cufed5", "root": str(cufed5), "level": 1}])
    with pytest.raises(
        TypeError, match=r"evaluation-set spec .*'level': 1.*unexpected keyword argument 'level'"
    ):
        module.setup("test")


class NameRecorder(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, str, str]] = []

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.seen.append((dataloader_idx, batch["name"][0], batch["ref_name"][0]))


def test_lightning_test_run_visits_each_set_under_its_index(
    cufed5: Path, sun80: Path, image_folder: Callable[[str, int], Path], tmp_path: Path
) -> None:
    module = TestDataModule(all_sets(cufed5, sun80, image_folder)[:3])
    recorder = NameRecorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.test(recorder, datamodule=module)
    assert [(index, name) for index, name, _ in recorder.seen] == [
        (0, "000_0"),
        (0, "001_0"),
        (1, "000_0"),
        (1, "001_0"),
        (2, "Image_01"),
        (2, "Image_02"),
        (2, "Image_03"),
    ]
    assert recorder.seen[0][2] == "000_1" and recorder.seen[2][2] == "000_1+000_2+000_3+000_4+000_5"
