"""TestDataModule: any number of evaluation sets (CUFED5, Sun80, Urban100, Manga109), one loader each.

``sets`` is a list of evaluation-set specs (plain dicts, see ``eval_sets.py``); ``test_set_names``
lists their names in dataloader order so the system logs ``test/<name>/psnr``, and, after ``setup``,
``reference_policies`` maps each name to the reference policy its dataset used (e.g. ``"L1"``,
``"random(seed=0)"``, ``"random_hr(seed=0)"``, ``"LR"``), for the logs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from ttsr_lightning.data.eval_dataset import EvalDataset
from ttsr_lightning.data.eval_sets import build_eval_set, plain, validate_eval_set_specs
from ttsr_lightning.data.loaders import check_loader_arguments, evaluation_loader
from ttsr_lightning.data.sample import build_sample_dataset


class TestDataModule(LightningDataModule):
    """Evaluation sets served whole, batch size 1, one dataloader per set.

    Args:
        sets: evaluation-set specs, e.g. ``[{"dataset": "cufed5", "root": ..., "ref_level": 1}]``.
        num_workers: loader worker processes per set.
        pin_memory: pin batches in page-locked memory.
        persistent_workers: keep workers alive between evaluations (ignored when ``num_workers`` is 0).
        sample_root: when set, the embedded sample dataset is built there first (``prepare_data``).
    """

    __test__ = False  # a DataModule, not a pytest test class

    def __init__(
        self,
        sets: Sequence[Mapping[str, Any]],
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        sample_root: str | None = None,
    ) -> None:
        super().__init__()
        check_loader_arguments("data.test", 1, num_workers)
        # Plain lists and dicts (not OmegaConf containers): they end up in checkpoints as hyper-parameters.
        sets = plain(sets)
        self.save_hyperparameters()
        if not sets:
            raise ValueError("data.test.sets is empty; expected at least one evaluation-set spec")
        self.test_set_names: list[str] = validate_eval_set_specs(sets, "data.test.sets")
        self.test_datasets: list[EvalDataset] = []
        self.reference_policies: dict[str, str] = {}

    def prepare_data(self) -> None:
        """Build the embedded sample dataset when configured (once per node; idempotent)."""
        if self.hparams["sample_root"] is not None:
            build_sample_dataset(self.hparams["sample_root"])

    def dataset_builders(self) -> list[tuple[str, str, Callable[[], EvalDataset]]]:
        """Every set, as (its key below ``data.test``, its name, a function that builds it, validating its
        folder tree): the pre-flight builds and checks each on its own."""
        specs = self.hparams["sets"]
        return [
            (f"sets[{i}]", name, partial(build_eval_set, spec))
            for i, (spec, name) in enumerate(zip(specs, self.test_set_names, strict=True))
        ]

    def setup(self, stage: str | None = None) -> None:
        """Scan every set's folder tree (validated here; images are checked when read)."""
        if self.test_datasets:
            return
        self.test_datasets = [build_eval_set(spec) for spec in self.hparams["sets"]]
        self.reference_policies = {
            name: dataset.reference_policy
            for name, dataset in zip(self.test_set_names, self.test_datasets, strict=True)
        }

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per set, in ``test_set_names`` order."""
        if not self.test_datasets:
            raise RuntimeError("TestDataModule.setup() must run before test_dataloader()")
        hp = self.hparams
        return [
            evaluation_loader(dataset, hp["num_workers"], hp["pin_memory"], hp["persistent_workers"])
            for dataset in self.test_datasets
        ]
