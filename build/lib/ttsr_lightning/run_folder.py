"""One training, one run folder and one W&B run, however often it is stopped and resumed.

- The run folder (``hydra.run.dir``, chosen by Hydra before the run starts) is
  ``${ttsr_run_dir:${ckpt_path},<log_dir>/<name>,<time>}`` (:func:`run_dir`): resuming a checkpoint
  ``<run>/checkpoints/<file>.ckpt`` continues in ``<run>``; a SLURM job writes to
  ``<log_dir>/<name>/<time>_slurm<job id>`` and, once requeued (``SLURM_RESTART_COUNT`` >= 1), finds
  that folder again; anything else gets a new ``<log_dir>/<name>/<time>``.
- Hydra's copy of the config (``hydra.output_subdir``, :func:`config_subdir`) is ``.hydra`` in a new
  folder and ``.hydra/resumed_<time>`` when a run continues there, so the first config stays.
- ``ckpt_path=last`` (the default, :func:`resume_checkpoint`) resumes from the run folder's
  ``checkpoints/last.ckpt`` when there is one and starts a new training otherwise: a requeued job
  needs no path.
- The W&B run id is kept in ``<run>/wandb_run_id`` (:func:`wandb_run_id`), so a resumed run logs to
  the same W&B run.
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

from omegaconf import OmegaConf

RUN_ID_FILE = "wandb_run_id"


@functools.cache  # one answer per process: the folders it looks at change once the run writes
def run_dir(ckpt_path: str | None, base: str, stamp: str) -> str:
    """The folder a training writes to (see the module docstring)."""
    if ckpt_path not in (None, "last"):
        checkpoint = Path(str(ckpt_path))
        if checkpoint.is_file() and checkpoint.parent.name == "checkpoints":
            return str(checkpoint.parent.parent)
    job = slurm_job()
    if job is None:
        return f"{base}/{stamp}"
    if int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0:
        earlier = sorted(Path(base).glob(f"*_slurm{job}"))
        if earlier:
            return str(earlier[-1])
    return f"{base}/{stamp}_slurm{job}"


def slurm_job() -> str | None:
    """The SLURM job (``<array job>_<task>`` for an array task) this process belongs to, if any."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    return os.environ.get("SLURM_JOB_ID") or None


@functools.cache  # Lightning's DDP launcher reads it again once the config is written
def config_subdir(output_dir: str, stamp: str) -> str:
    """Where Hydra writes its config in the run folder: ``.hydra``, or beside the first one on a resume."""
    return f".hydra/resumed_{stamp}" if (Path(output_dir) / ".hydra" / "config.yaml").is_file() else ".hydra"


def resume_checkpoint(ckpt_path: str | None, checkpoint_dir: Path) -> str | None:
    """``ckpt_path`` for ``Trainer.fit``: ``last`` becomes ``<checkpoint_dir>/last.ckpt`` when it exists
    (else None: a new training)."""
    if ckpt_path != "last":
        return ckpt_path
    last = checkpoint_dir / "last.ckpt"
    return str(last) if last.is_file() else None


def wandb_run_id(output_dir: Path) -> str:
    """The W&B run id of the run in ``output_dir``: read from it, or made and written there."""
    path = output_dir / RUN_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:8]
    output_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def register_resolvers() -> None:
    """Make ``ttsr_run_dir`` and ``ttsr_config_subdir`` known to the configs (conf/config.yaml)."""
    OmegaConf.register_new_resolver("ttsr_run_dir", run_dir, replace=True)
    OmegaConf.register_new_resolver("ttsr_config_subdir", config_subdir, replace=True)
