"""Writing files so that nothing is lost or overwritten by surprise.

- :func:`atomic_write`: every checkpoint and result file is written to a temporary file in its own
  destination folder (``.<name>.<pid>.<random>.partial``), flushed, fsynced and renamed over the
  destination (then the folder is fsynced). The rename never crosses filesystems, so a kill or a full
  disk at any moment leaves either the previous file or the new one, whole; a failed write removes
  its temporary file, and :func:`remove_stale_temporaries` removes those of writers that were killed
  (:func:`remove_unfinished_writes`: what every writing command does at its start).
- :func:`write_text`, :func:`write_csv`, :func:`save_figure` and :func:`write_json` (strict JSON: no
  ``Infinity`` / ``NaN``, such numbers become ``null``): one writer per format, each atomic.
- :class:`RunFolderLock`: one live run per run folder (an ``flock`` the OS releases when the process
  dies, so a killed run leaves no stale lock).
- :func:`check_new_output` / :func:`check_output_folder`: an output path is refused before any work
  when it would overwrite an earlier result (without ``overwrite=true``) or cannot be created.

An ``OSError`` raised while writing names the destination path (``filename``), so the command line
reports it in one line.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import logging
import math
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ttsr_lightning.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

TEMPORARY_SUFFIX = ".partial"
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}" + re.escape(TEMPORARY_SUFFIX) + "$")
LOCK_NAME = ".run.lock"


def temporary_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``, naming this process (see :func:`remove_stale_temporaries`)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


def fsync_folder(folder: Path) -> None:
    """Makes a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """Writes ``path`` through ``write(file)`` (a binary file object) atomically: a temporary file in
    the same folder, flushed and fsynced, then renamed over ``path``. On any failure (disk full, an
    exception inside ``write``) the temporary file is removed, ``path`` is untouched, and an
    ``OSError`` names ``path``."""
    path = Path(path)
    try:
        make_folder(path.parent)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file path", str(path))
        temporary = temporary_path(path)
        with open(temporary, "xb") as file:
            try:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            except BaseException:
                file.close()
                temporary.unlink(missing_ok=True)
                raise
        try:
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as exc:
        if exc.filename is None or _is_temporary(exc.filename):  # report it under the destination's name
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    fsync_folder(path.parent)


def make_folder(folder: Path) -> None:
    """``folder.mkdir(parents=True, exist_ok=True)``; a file in the way is an OSError naming that file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file where a folder should be (exist_ok covers folders only)
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", exc.filename) from exc


def _is_temporary(name: object) -> bool:
    return isinstance(name, str | os.PathLike) and _TEMPORARY.match(Path(name).name) is not None


def write_text(path: str | Path, text: str) -> None:
    """``path.write_text(text)`` (UTF-8), atomically."""
    atomic_write(path, lambda file: file.write(text.encode()))


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as CSV (header from the first row's keys), atomically."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def save_figure(path: str | Path, figure: Figure) -> None:
    """A matplotlib figure in the format ``path``'s suffix names (``.png``, ``.pdf``...), atomically."""
    path = Path(path)
    atomic_write(path, lambda file: figure.savefig(file, format=path.suffix.lstrip(".").lower() or "png"))


def finite_or_null(value: Any) -> tuple[Any, list[str]]:
    """``value`` with every NaN / infinite float replaced by None, and the dotted keys replaced."""
    replaced: list[str] = []

    def visit(node: Any, key: str) -> Any:
        if isinstance(node, float) and not math.isfinite(node):
            replaced.append(key or "(top level)")
            return None
        if isinstance(node, dict):
            return {k: visit(v, f"{key}.{k}" if key else str(k)) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [visit(v, f"{key}[{i}]") for i, v in enumerate(node)]
        return node

    return visit(value, ""), replaced


def write_json(path: str | Path, document: Any, sort_keys: bool = False) -> list[str]:
    """Strict JSON, atomically. JSON has no NaN or infinity: such numbers are written as ``null``, and a
    dict document gets a ``notes`` entry listing where; returns those keys."""
    clean, replaced = finite_or_null(document)
    if replaced and isinstance(clean, dict):
        note = f"null where the value is not finite (NaN or infinity): {', '.join(replaced)}"
        clean["notes"] = [*clean.get("notes", []), note]
    write_text(path, json.dumps(clean, indent=2, allow_nan=False, sort_keys=sort_keys) + "\n")
    return replaced


def remove_stale_temporaries(
    folder: str | Path, recursive: bool = False, writers_gone: bool = False
) -> list[Path]:
    """Removes the temporary files of :func:`atomic_write` in ``folder`` (``recursive``: and in every
    folder below it) whose writer process is no longer alive (a killed writer's leftovers); returns them.
    ``writers_gone``: every one of them, when the caller knows that no earlier writer lives (it holds the
    lock they held: then a writer that still looks alive is a killed process nobody has reaped)."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    # os.walk follows no symbolic link: only the folder's own tree is searched
    folders = [Path(parent) for parent, _, _ in os.walk(folder)] if recursive else [folder]
    for searched in folders:
        for path in sorted(searched.iterdir()):
            match = _TEMPORARY.match(path.name)
            if match and path.is_file() and (writers_gone or not _process_alive(int(match.group(1)))):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


def remove_unfinished_writes(
    folders: Iterable[str | Path], recursive: bool = False, writers_gone: bool = False
) -> list[Path]:
    """What a command does at its start for the folders it writes into: :func:`remove_stale_temporaries`
    of each (``recursive``: with the folders below it; ``writers_gone``: as there), every removal logged;
    returns the removed files."""
    removed = []
    for folder in dict.fromkeys(Path(folder) for folder in folders):
        for leftover in remove_stale_temporaries(folder, recursive, writers_gone):
            log.info("removed %s, the unfinished write of a killed run", leftover)
            removed.append(leftover)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier writer of this process that failed without cleaning up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunFolderLock:
    """An exclusive lock on a run folder (``<folder>/.run.lock``), held while the run lives.

    ``flock`` on an open file: the OS drops it when the process ends, however it ends, so a killed run
    never leaves a stale lock and a resumed run takes the folder back. A second live run into the same
    folder gets a :class:`ConfigError` naming the folder and the holder's pid.
    """

    def __init__(self, folder: str | Path, key: str = "hydra.run.dir") -> None:
        self.folder = Path(folder)
        self.key = key
        self._file: IO[str] | None = None

    def acquire(self) -> RunFolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_NAME
        file = open(path, "a+")  # noqa: SIM115 (held open while the run lives)
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            file.close()
            raise ConfigError(
                f"{self.key}: the run folder {self.folder} is in use by a live run ({holder}); "
                "wait for it to end or choose another folder"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()}\n")
        file.flush()
        self._file = file
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def run_folder_lock(folder: str | Path, enabled: bool = True) -> Iterator[None]:
    """:class:`RunFolderLock` on ``folder`` while the block runs (nothing when not ``enabled``:
    the other processes of a multi-process run share their rank 0's lock)."""
    if not enabled:
        yield
        return
    with RunFolderLock(folder):
        yield


def check_output_folder(folder: str | Path, key: str) -> None:
    """Refuses, before any work, an output folder that cannot be created: a file in its place or on
    its way (``out=/dev/null/x``). Errors name ``key``."""
    folder = Path(folder)
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise ConfigError(f"{key}: cannot write into {folder}: {candidate} is a file, not a folder")
            return


def check_new_output(paths: Sequence[str | Path], key: str, overwrite: bool) -> None:
    """Refuses, before any work, outputs that would overwrite an earlier result (unless ``overwrite``)
    or that are folders; errors name ``key`` and how to proceed."""
    for path in map(Path, paths):
        if path.is_dir():
            raise ConfigError(f"{key}: {path} is a folder; give a file path")
        if path.exists() and not overwrite:
            raise ConfigError(
                f"{key}: {path} already holds an earlier result; pass overwrite=true to replace it, "
                "or choose another path"
            )
        check_output_folder(path.parent, key)
