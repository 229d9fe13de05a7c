"""RehearsalProbe: what a rehearsal (``debug=rehearse``, :mod:`ttsr_lightning.rehearsal`) measures inside
the rehearsed run, and the SIGTERM it waits for.

Added to the rehearsed run's callbacks by the rehearsal's command line; a normal run never has it. On the
first process (global rank 0) it writes ``<folder>/probe_<pid>.json`` after every training batch,
validation and test image (atomically: the rehearsal reads it while the run goes on):

- each training batch: its number in the run, epoch, phase (warm-up or not), the seconds from its
  start to its end and the seconds the loop waited for it before (data loading, hooks);
- each validation and test image: its set and seconds;
- the peak memory of the process (host: the resident set of it and of its finished children; GPU: the
  most allocated) and the wall-clock time of the first batch's start.

On a GPU the device is synchronised at every measured point, so each time is the device's.

``sigterm_before_batch``: before that training batch (1-based over the run) the probe writes
``<folder>/waiting_for_sigterm`` and waits until Lightning has received SIGTERM, which the rehearsal sends
to the run's whole process group as a scheduler would; the batch then runs and the run stops after it.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import Any, cast

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from ttsr_lightning.files import write_json

WAITING_MARKER = "waiting_for_sigterm"
# how long the probe waits for the rehearsal's SIGTERM before it gives up (then the run goes on)
SIGTERM_WAIT_SECONDS = 300.0


class RehearsalProbe(Callback):
    """See the module docstring.

    Args:
        folder: where the probe writes ``probe_<pid>.json`` and the waiting marker.
        sigterm_before_batch: the 1-based run batch before which it waits for SIGTERM (None: never).
    """

    def __init__(self, folder: str, sigterm_before_batch: int | None = None) -> None:
        self.folder = Path(folder)
        self.sigterm_before_batch = sigterm_before_batch
        self.record: dict[str, Any] = {"pid": os.getpid(), "train": [], "validation": [], "test": []}
        self._batch_started = 0.0
        self._last_end: float | None = None
        self._image_started = 0.0

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_end = self._now(trainer)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        run_batch = _batches_run(pl_module) + 1  # the batch about to run
        if run_batch == self.sigterm_before_batch:
            self._wait_for_sigterm(trainer)
        self._batch_started = self._now(trainer)
        self.record.setdefault("first_batch_wall_time", time.time())

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        ended = self._now(trainer)
        waited = self._batch_started - self._last_end if self._last_end is not None else None
        self.record["train"].append(
            {
                "run_batch": _batches_run(pl_module),
                "epoch": trainer.current_epoch,
                "warmup": bool(getattr(pl_module, "in_warmup", False)),
                "seconds": ended - self._batch_started,
                "waited_seconds": waited,
            }
        )
        self._last_end = ended
        self._write(trainer)

    # ------------------------------------------------------------------ validation and test
    def on_validation_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._image_started = self._now(trainer)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._image(trainer, "validation", _set_name(trainer, "val", dataloader_idx))

    def on_test_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._image_started = self._now(trainer)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._image(trainer, "test", _set_name(trainer, "test", dataloader_idx))

    def _image(self, trainer: Trainer, stage: str, set_name: str) -> None:
        self.record[stage].append({"set": set_name, "seconds": self._now(trainer) - self._image_started})
        self._write(trainer)

    # ------------------------------------------------------------------ helpers
    def _now(self, trainer: Trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        return time.perf_counter()

    def _wait_for_sigterm(self, trainer: Trainer) -> None:
        if trainer.is_global_zero:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / WAITING_MARKER).write_text(f"{os.getpid()}\n")
        deadline = time.monotonic() + SIGTERM_WAIT_SECONDS
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.02)

    def _write(self, trainer: Trainer) -> None:
        if not trainer.is_global_zero:
            return
        self.record["host_peak_bytes"] = 1024 * max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        )
        if trainer.strategy.root_device.type == "cuda":
            self.record["gpu_peak_bytes"] = torch.cuda.max_memory_allocated(trainer.strategy.root_device)
        write_json(self.folder / f"probe_{os.getpid()}.json", self.record)


def _set_name(trainer: Trainer, stage: str, dataloader_idx: int) -> str:
    """The name of the validation or test set of ``dataloader_idx`` (its DataModule's names)."""
    datamodule = trainer.datamodule  # type: ignore[attr-defined]
    names = getattr(datamodule, "val_set_names" if stage == "val" else "test_set_names", None)
    return names[dataloader_idx] if names and dataloader_idx < len(names) else f"{stage}_{dataloader_idx}"


def read_probes(folder: Path) -> list[dict[str, Any]]:
    """Every probe record in ``folder``, in the order their processes started training."""
    records = [json.loads(path.read_text()) for path in folder.glob("probe_*.json")]
    return sorted(records, key=lambda record: record.get("first_batch_wall_time", float("inf")))


def _batches_run(pl_module: LightningModule) -> int:
    """The training batches the module has run (TTSRSystem counts them, and checkpoints the count)."""
    return int(cast(Any, pl_module).batches_run)
