"""Command-line entry points: Hydra's ``main`` with errors a person can read.

A bad argument, file or config value (an unknown override or config group, a value a schema refuses:
``<key>: <why>`` from OmegaConf's ValidationError, a value a check or a constructor refuses: the suite's
instantiations name the config key themselves (builders.instantiate_node), a value Lightning's Trainer
refuses (its MisconfigurationException), a missing or mismatched checkpoint, a dataset that is not laid
out as expected, ...) prints one line ``error: <what, naming the key or file>`` on stderr and exits with
status 2. A run stopped by a non-finite loss prints its one line and exits with status 1; one stopped by
SIGTERM (after writing the checkpoint it resumes from) with status 143, as a process killed by SIGTERM,
so that no scheduler takes it for a finished job. An operating-system error (a path that cannot be read,
created or written: missing, permission denied, a file where a folder should be, a full disk) prints one
line naming the path and exits with status 2, or 1 when the machine failed (disk full, I/O error).
Anything else is a bug and keeps its traceback. ``HYDRA_FULL_ERROR=1`` shows the traceback of every
error. The commands that parse their own arguments (``official convert``, ``data.prepare``) report
through :func:`reported_errors` the same way.

How: Hydra is told to re-raise (``HYDRA_FULL_ERROR=1`` inside the process; the user's own setting is
remembered in ``TTSR_SHOW_TRACEBACK`` so DDP child processes, which inherit the environment, decide the
same way), and :func:`hydra_entry_point` reports the exception itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import hydra
from hydra.errors import HydraException, InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException, ValidationError

from ttsr_lightning.config_paths import CONFIG_DIR
from ttsr_lightning.data.errors import DatasetError
from ttsr_lightning.errors import (
    CheckpointError,
    ConfigError,
    NonFiniteError,
    Preempted,
    PreflightError,
    RehearsalFailed,
)
from ttsr_lightning.run_folder import register_resolvers

USAGE_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    CheckpointError,
    DatasetError,
    FileNotFoundError,
    HydraException,
    MisconfigurationException,
    OmegaConfBaseException,
)
REPORTED_ERRORS: tuple[type[BaseException], ...] = (
    NonFiniteError,
    Preempted,
    RehearsalFailed,
    OSError,
    *USAGE_ERRORS,
)
# operating-system errors that are the machine's failure, not a wrong path (exit status 1)
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.ENOMEM})
USAGE_EXIT_CODE = 2
FAILURE_EXIT_CODE = 1
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM
_TRACEBACK_SETTING = "TTSR_SHOW_TRACEBACK"

# the configs' own resolvers (conf/config.yaml: hydra.run.dir, hydra.output_subdir), known wherever an
# entry point is imported: also in the processes of a launcher (submitit) that resolve a job's config
register_resolvers()


def one_line(exc: BaseException) -> str:
    """The exception's message on one line; for a config that failed to instantiate, the cause's (the
    suite's own instantiations name the config key: builders.instantiate_node)."""
    if isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        return one_line(exc.__cause__)
    if isinstance(exc, OSError) and exc.filename is not None:
        target = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else str(exc.filename)
        return f"{target}: {exc.strerror or type(exc).__name__}"
    message = str(exc) or type(exc).__name__
    if isinstance(exc, OmegaConfBaseException):
        message = message.splitlines()[0]  # the rest repeats the key and the object type
        if exc.full_key and exc.full_key not in message:  # e.g. an interpolation typed by a schema
            message = f"{exc.full_key}: {message}"
    refusal = exc.__cause__
    if isinstance(refusal, ValidationError) and isinstance(exc, HydraException) and refusal.full_key:
        # a value the schema refuses (conf/<group> + config_schema.py): the key, then why
        message = f"{refusal.full_key}: {str(refusal).splitlines()[0]}"
    elif isinstance(refusal, OmegaConfBaseException) and isinstance(exc, HydraException):
        message = f"{message} ({str(refusal).splitlines()[0]})"
    # Hydra's messages: sentences, then headings ("Available options in 'data':") with indented items
    parts: list[list[str]] = []
    for line in message.splitlines():
        if not line.strip():
            continue
        if line[:1].isspace() and parts and parts[-1][0].endswith(":"):
            parts[-1].append(line.strip())
        else:
            parts.append([line.strip()])
    shown = [part for part in parts if not part[0].startswith("Config search path")]
    text = ""
    for part in shown:
        piece = f"{part[0]} {', '.join(part[1:])}" if len(part) > 1 else part[0]
        text += piece if not text else (" " if text.endswith(".") else "; ") + piece
    return text


def exit_code(exc: BaseException) -> int:
    """The exit status of a run ended by ``exc``: 143 when stopped by SIGTERM, 2 for a usage error (a wrong
    path included), 1 for a run that failed (non-finite loss, the machine's own error, anything else)."""
    if isinstance(exc, Preempted):
        return PREEMPTED_EXIT_CODE
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        return FAILURE_EXIT_CODE if exc.errno in MACHINE_ERRNOS else USAGE_EXIT_CODE
    return USAGE_EXIT_CODE if isinstance(exc, USAGE_ERRORS) else FAILURE_EXIT_CODE


def _report(exc: BaseException) -> NoReturn:
    for line in exc.problems if isinstance(exc, PreflightError) else [one_line(exc)]:
        print(f"error: {line}", file=sys.stderr)
    raise SystemExit(exit_code(exc)) from None


def applied_last(arguments: list[str], groups: tuple[str, ...]) -> list[str]:
    """The command line with ``<group>=<option>`` of ``groups`` (absent from the defaults list) moved to
    the end as ``+<group>=<option>``: Hydra merges appended groups in command-line order, so the debug
    settings then come after ``+experiment=...`` and ``+scale=...``, wherever they were typed."""
    moved = [
        f"+{argument.lstrip('+')}"
        for argument in arguments
        if argument.lstrip("+").split("=", 1)[0] in groups
    ]
    kept = [argument for argument in arguments if argument.lstrip("+").split("=", 1)[0] not in groups]
    return [*kept, *moved]


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """For entry points with their own argument parser: the errors of the module docstring become one
    line and an exit status (``HYDRA_FULL_ERROR=1``: the traceback)."""
    os.environ.setdefault(_TRACEBACK_SETTING, os.environ.get("HYDRA_FULL_ERROR", "0"))
    try:
        yield
    except REPORTED_ERRORS as exc:
        if _show_traceback():
            raise
        _report(exc)


def hydra_entry_point(
    task: Callable[[DictConfig], Any], config_name: str, applied_last_groups: tuple[str, ...] = ()
) -> Callable[[], None]:
    """``main()`` for ``python -m ttsr_lightning.<module>``: runs ``task`` on the composed config
    ``conf/<config_name>.yaml`` (command-line overrides, multirun sweeps, launchers: all Hydra) and
    reports errors as the module docstring says. ``task``'s return value goes to Hydra (sweepers).
    ``applied_last_groups``: config groups merged last, wherever typed (:func:`applied_last`)."""

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
    def run(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except REPORTED_ERRORS as exc:
            # reported here, so that Hydra adds no "Error executing job" line
            if _show_traceback():
                raise
            _report(exc)

    def main() -> None:
        os.environ.setdefault(_TRACEBACK_SETTING, os.environ.get("HYDRA_FULL_ERROR", "0"))
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises its own (composition) errors to us
        # in place: Lightning's DDP launcher starts the other ranks with sys.argv
        sys.argv[1:] = applied_last(sys.argv[1:], applied_last_groups)
        try:
            run()
        except REPORTED_ERRORS as exc:
            if _show_traceback():
                raise
            _report(exc)

    return main


def _show_traceback() -> bool:
    return os.environ.get(_TRACEBACK_SETTING) == "1"
