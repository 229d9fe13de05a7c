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
- :func:`continue_command` is the command, to paste as it is, that continues a run in its folder: the
  program as it was started, the run's own overrides, and ``ckpt_path=<run>/checkpoints/last.ckpt``.
  Every message that says how to continue a run prints it; :func:`unfinished_runs` finds the runs of a
  name that stopped before they finished, so a new training started beside them can say how to continue
  them instead.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shlex
import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from ttsr_lightning.files import LOCK_NAME, write_text

RUN_ID_FILE = "wandb_run_id"
# Hydra settings of a sweep (and how it was launched), not of the run: a continued run is one run
_SWEEP_SETTINGS = (
    "hydra.mode",
    "hydra.sweep",
    "hydra.sweeper",
    "hydra/sweeper",
    "hydra.launcher",
    "hydra/launcher",
)
_CHECKPOINT_KEYS = ("ckpt_path=", "+ckpt_path=", "++ckpt_path=")


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
    write_text(path, run_id + "\n")
    return run_id


def register_resolvers() -> None:
    """Make ``ttsr_run_dir`` and ``ttsr_config_subdir`` known to the configs (conf/config.yaml)."""
    OmegaConf.register_new_resolver("ttsr_run_dir", run_dir, replace=True)
    OmegaConf.register_new_resolver("ttsr_config_subdir", config_subdir, replace=True)


def program() -> list[str]:
    """How this process was started, for a command to paste: ``python -m <module>`` (``python`` when that
    name finds this interpreter, else its path), or the console script (its name when that name finds
    it)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        module = spec.name.removesuffix(".__main__")
        python = "python" if shutil.which("python") == sys.executable else sys.executable
        return [python, "-m", module]
    script = sys.argv[0]
    name = Path(script).name
    found = shutil.which(name)
    return [name if found and Path(found).resolve() == Path(script).resolve() else script]


def run_overrides() -> list[str]:
    """The command-line overrides of this Hydra job (a sweep member's own values), less ``ckpt_path``
    and the sweep's settings."""
    config = HydraConfig.get()
    typed = [*config.overrides.hydra, *config.overrides.task]
    return [
        override
        for override in typed
        if not override.startswith(_CHECKPOINT_KEYS) and not override.startswith(_SWEEP_SETTINGS)
    ]


def continue_command(
    checkpoint: Path, overrides: Sequence[str] | None = None, extra: Sequence[str] = ()
) -> str:
    """The shell command that continues the run of ``checkpoint`` (``<run>/checkpoints/<file>.ckpt``) in
    its folder and W&B run: this job's program and ``overrides`` (default: :func:`run_overrides`),
    ``extra`` ones, and the checkpoint's absolute path."""
    words = [*program(), *(run_overrides() if overrides is None else overrides), *extra]
    words.append(f"ckpt_path={checkpoint.resolve()}")
    return shlex.join(words)


def unfinished_runs(base: Path, exclude: Path) -> list[Path]:
    """Run folders under ``base`` (``<log_dir>/<name>``), newest first, that stopped before they finished:
    a ``checkpoints/last.ckpt``, no ``run.json``, and no live process holding the folder's lock."""
    found = []
    for folder in sorted(base.glob("*/"), reverse=True):
        if folder.resolve() == exclude.resolve() or (folder / "run.json").exists():
            continue
        if (folder / "checkpoints" / "last.ckpt").is_file() and not _locked(folder):
            found.append(folder)
    return found


def recorded_overrides(run: Path) -> list[str] | None:
    """The overrides a run folder's first part was started with (Hydra's ``.hydra/overrides.yaml``)."""
    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    recorded = OmegaConf.load(path)
    return [str(item) for item in recorded if not str(item).startswith(_CHECKPOINT_KEYS)]  # type: ignore[union-attr]


def _locked(folder: Path) -> bool:
    """Whether a live process holds the run folder's lock (``files.RunFolderLock``)."""
    path = folder / LOCK_NAME
    if not path.is_file():
        return False
    with open(path) as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)
    return False
