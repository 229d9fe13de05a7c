"""Datasets and DataModules: the only code that touches image files.

Datasets (pure torch + Pillow + numpy): ``CUFEDTrainDataset`` (training pairs), ``CUFED5Dataset``,
``Sun80Dataset``, ``Urban100Dataset``, ``Manga109Dataset``, ``WRSRDataset`` (evaluation sets).
DataModules (Lightning): ``TrainDataModule`` and ``TestDataModule``. ``build_sample_dataset`` makes the
embedded sample set; ``python -m ttsr_lightning.data.prepare`` checks downloaded datasets.
"""

from ttsr_lightning.data.cufed import CUFEDTrainDataset, ImagePair, find_cufed_pairs
from ttsr_lightning.data.cufed5 import CUFED5Dataset
from ttsr_lightning.data.epoch_sampler import EpochSampler
from ttsr_lightning.data.errors import DatasetError, DatasetLayoutError, ImageError
from ttsr_lightning.data.eval_dataset import EvalDataset, EvalItem
from ttsr_lightning.data.eval_sets import EVAL_SETS, build_eval_set
from ttsr_lightning.data.manga109 import Manga109Dataset
from ttsr_lightning.data.sample import build_sample_dataset
from ttsr_lightning.data.sun80 import Sun80Dataset
from ttsr_lightning.data.test_datamodule import TestDataModule
from ttsr_lightning.data.train_datamodule import TrainDataModule
from ttsr_lightning.data.urban100 import Urban100Dataset
from ttsr_lightning.data.wrsr import WRSRDataset

__all__ = [
    "EVAL_SETS",
    "CUFED5Dataset",
    "CUFEDTrainDataset",
    "DatasetError",
    "DatasetLayoutError",
    "EpochSampler",
    "EvalDataset",
    "EvalItem",
    "ImageError",
    "ImagePair",
    "Manga109Dataset",
    "Sun80Dataset",
    "TestDataModule",
    "TrainDataModule",
    "Urban100Dataset",
    "WRSRDataset",
    "build_eval_set",
    "build_sample_dataset",
    "find_cufed_pairs",
]
