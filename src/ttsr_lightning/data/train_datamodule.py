"""TrainDataModule: CUFED-shaped training pairs, and validation sets evaluated like test sets.

Validation is any mix of (a) evaluation-set specs (``val_sets``, e.g. CUFED5 at level 1; see
``eval_sets.py``) and (b) a held-out fraction of the training pairs (``val_fraction``), drawn with
the seed and evaluated like a test set: whole image, its own pair reference, batch size 1, named
``CUFED_heldout``. ``val_set_names`` lists them in dataloader order (held-out first).

Resume: the training loader (``EpochDataLoader``) records the epoch and the batches already trained in
it, in every checkpoint through Lightning's stateful-loader path; a run restored from a mid-epoch
checkpoint skips exactly those (``EpochSampler.skip``), so nothing is lost or re-done.

Epochs: the training loader's sampler (``EpochSampler``) receives the epoch from Lightning's
``set_epoch`` call at the start of every epoch and passes it, with each index, to the dataset, which
seeds that sample's crops and flips from (seed, epoch, index). Samples are therefore the same with
any ``num_workers``, with persistent workers, and after a resume; the LightningModule does nothing.
The loader's ``generator`` is seeded too, so worker processes get deterministic seeds for any other
library that draws random numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from ttsr_lightning.data.cufed import CUFEDTrainDataset
from ttsr_lightning.data.epoch_sampler import EpochSampler
from ttsr_lightning.data.eval_dataset import EvalDataset, EvalItem
from ttsr_lightning.data.eval_sets import build_eval_set, plain, validate_eval_set_specs
from ttsr_lightning.data.loaders import check_loader_arguments, evaluation_loader, ignore_stop_signals
from ttsr_lightning.data.preprocessing import SCALE
from ttsr_lightning.data.sample import build_sample_dataset
from ttsr_lightning.data.seeding import split_generator

HELD_OUT_NAME = "CUFED_heldout"


class EpochDataLoader(DataLoader):
    """The training loader: reads its sampler at the first batch, and resumes mid-epoch by its own state.

    Lightning creates the training iterator in ``FitLoop.setup_data``, before ``on_advance_start``
    calls ``set_epoch``, and on a resumed run it keeps that iterator for the resumed epoch. With
    workers, torch's iterator draws ``prefetch_factor * num_workers`` batches of indices from the
    sampler as soon as it is created, so the sampler would hand out epoch 0's keys and order (and drop
    its ``skip``, which names the resumed epoch). Deferring the creation to the first ``next()``,
    after ``set_epoch``, gives every worker count what ``num_workers=0`` gets.

    Resume, by Lightning's supported path for a stateful loader: ``state_dict`` gives the epoch and the
    batches handed out in it, which Lightning stores in every checkpoint (it fetches no batch ahead
    from a loader with a length, so those are the batches trained, the current one included);
    ``load_state_dict``, which Lightning calls on the resumed run's new loader before its first batch,
    makes the next iteration of that epoch start after them (``EpochSampler.skip``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._position = (0, 0)  # (epoch, batches handed out in it)
        self._resume: tuple[int, int] | None = None  # a restored position, until its epoch starts

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]  # a lazy stand-in for the torch iterator
        return _DeferredIterator(self._start_epoch, self._handed_out)

    def _start_epoch(self) -> Iterator[Any]:
        epoch = self._sampler().epoch
        resume, self._resume = self._resume, None
        self._position = (epoch, resume[1] if resume is not None and resume[0] == epoch else 0)
        return super().__iter__()

    def _handed_out(self) -> None:
        self._position = (self._position[0], self._position[1] + 1)

    def _sampler(self) -> EpochSampler:
        if not isinstance(self.sampler, EpochSampler):
            raise TypeError(f"EpochDataLoader needs an EpochSampler, got {type(self.sampler).__name__}")
        return self.sampler

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self._resume if self._resume is not None else self._position
        return {"epoch": epoch, "batches_done": batches}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        epoch, batches = int(state_dict["epoch"]), int(state_dict["batches_done"])
        self._resume = (epoch, batches)
        self._sampler().skip(epoch, batches * int(self.batch_size or 1))


class _DeferredIterator:
    def __init__(self, create: Callable[[], Iterator[Any]], handed_out: Callable[[], None]) -> None:
        self._create: Callable[[], Iterator[Any]] | None = create
        self._handed_out = handed_out
        self._iterator: Iterator[Any] | None = None

    def __iter__(self) -> _DeferredIterator:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            assert self._create is not None
            self._iterator, self._create = self._create(), None
        batch = next(self._iterator)
        self._handed_out()
        return batch


class TrainDataModule(LightningDataModule):
    """Training pairs from a CUFED-shaped folder plus validation sets.

    Args:
        train_root: folder holding ``input/`` and ``ref/`` (e.g. ``<data_dir>/CUFED/train``).
        val_sets: evaluation-set specs (plain dicts, see ``eval_sets.py``) used for validation.
        val_fraction: fraction of the training pairs held out for validation (0 = none).
        batch_size: training batch size (9 in the official recipe).
        num_workers: loader worker processes (training and validation loaders).
        pin_memory: pin batches in page-locked memory (faster host-to-GPU copies).
        persistent_workers: keep workers alive between epochs (ignored when ``num_workers`` is 0).
        patch_size: HR and reference size of a training sample (160 in the official code).
        augment: the official random flips and rotations.
        seed: seeds the augmentation, the order of the samples, the held-out split and the workers.
        sample_root: when set, the embedded sample dataset is built there first (``prepare_data``).
    """

    def __init__(
        self,
        train_root: str,
        val_sets: Sequence[Mapping[str, Any]] = (),
        val_fraction: float = 0.0,
        batch_size: int = 9,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        patch_size: int = 160,
        augment: bool = True,
        seed: int = 0,
        sample_root: str | None = None,
    ) -> None:
        super().__init__()
        check_loader_arguments("data.train", batch_size, num_workers)
        if patch_size <= 0 or patch_size % SCALE:
            raise ValueError(
                f"data.train.patch_size must be a positive multiple of {SCALE}, got {patch_size}"
            )
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"data.train.val_fraction must be in [0, 1), got {val_fraction}")
        if seed < 0:
            raise ValueError(f"data.train.seed must be >= 0, got {seed}")
        # Plain lists and dicts (not OmegaConf containers): they end up in checkpoints as hyper-parameters.
        val_sets = plain(val_sets)
        self.save_hyperparameters()
        held_out = [HELD_OUT_NAME] if val_fraction > 0 else []
        self.val_set_names: list[str] = held_out + validate_eval_set_specs(val_sets, "data.train.val_sets")
        self.train_set: CUFEDTrainDataset | None = None
        self.train_indices: list[int] = []
        self.val_datasets: list[EvalDataset] = []
        self.train_sampler: EpochSampler | None = None
        # the loader's position as older checkpoints kept it (EpochDataLoader keeps its own)
        self._legacy_position: dict[str, Any] | None = None

    def prepare_data(self) -> None:
        """Build the embedded sample dataset when configured (once per node; idempotent)."""
        if self.hparams["sample_root"] is not None:
            build_sample_dataset(self.hparams["sample_root"])

    def dataset_builders(self) -> list[tuple[str, str, Callable[[], Any]]]:
        """Every dataset this module reads, as (its key below ``data.train``, its name, a function that
        builds it, validating its folder tree): the pre-flight builds and checks each on its own."""
        hp = self.hparams
        specs = hp["val_sets"]
        names = validate_eval_set_specs(specs, "data.train.val_sets")
        return [
            ("train_root", "CUFED train", self._build_train_set),
            *(
                (f"val_sets[{i}]", name, partial(build_eval_set, spec))
                for i, (spec, name) in enumerate(zip(specs, names, strict=True))
            ),
        ]

    def _build_train_set(self) -> CUFEDTrainDataset:
        hp = self.hparams
        return CUFEDTrainDataset(hp["train_root"], hp["patch_size"], hp["augment"], hp["seed"])

    def setup(self, stage: str | None = None) -> None:
        """Scan the training folder and the validation sets (folder trees are validated here)."""
        if self.train_set is not None:
            return
        hp = self.hparams
        self.train_set = self._build_train_set()
        self.train_indices = list(range(len(self.train_set)))
        self.val_datasets = []
        if hp["val_fraction"] > 0:
            self.train_indices, held_out = self._split(len(self.train_set))
            items = [
                EvalItem(pair.input.stem, pair.input, (pair.ref,), pair.ref.stem)
                for pair in (self.train_set.pairs[index] for index in held_out)
            ]
            self.val_datasets.append(EvalDataset(HELD_OUT_NAME, items, "paired"))
        self.val_datasets += [build_eval_set(spec) for spec in hp["val_sets"]]

    def _split(self, count: int) -> tuple[list[int], list[int]]:
        """(training indices, held-out indices), both sorted; the held-out ones drawn with the seed."""
        fraction = self.hparams["val_fraction"]
        held_out_count = round(fraction * count)
        if not 1 <= held_out_count < count:
            raise ValueError(
                f"data.train.val_fraction={fraction} holds out {held_out_count} of {count} training pairs; "
                "expected at least one, and fewer than all"
            )
        order = split_generator(self.hparams["seed"]).permutation(count).tolist()
        return sorted(order[held_out_count:]), sorted(order[:held_out_count])

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented batches; the sampler carries the epoch (see the module docstring)."""
        if self.train_set is None:
            raise RuntimeError("TrainDataModule.setup() must run before train_dataloader()")
        hp = self.hparams
        self.train_sampler = EpochSampler(self.train_indices, shuffle=True, seed=hp["seed"])
        loader = EpochDataLoader(
            self.train_set,
            batch_size=hp["batch_size"],
            sampler=self.train_sampler,
            num_workers=hp["num_workers"],
            pin_memory=hp["pin_memory"],
            persistent_workers=hp["persistent_workers"] and hp["num_workers"] > 0,
            generator=torch.Generator().manual_seed(hp["seed"]),
            worker_init_fn=ignore_stop_signals,
            drop_last=False,  # as the official loader (11,871 = 1,319 x 9 anyway)
        )
        if self._legacy_position is not None:
            loader.load_state_dict(self._legacy_position)
            self._legacy_position = None
        return loader

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Checkpoints written before the training loader held its own position kept it here."""
        if state_dict:
            self._legacy_position = {"epoch": state_dict["epoch"], "batches_done": state_dict["batches_done"]}

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per validation set, in ``val_set_names`` order, batch size 1."""
        hp = self.hparams
        return [
            evaluation_loader(dataset, hp["num_workers"], hp["pin_memory"], hp["persistent_workers"])
            for dataset in self.val_datasets
        ]
