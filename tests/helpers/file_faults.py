"""Faults of the file system for the tests of atomic writes: a disk that fills up, the leftover of a
writer that was killed mid-write."""

from __future__ import annotations

import errno
import functools
import io
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ttsr_lightning import files


class FullDisk(io.FileIO):
    """A file on a disk with ``room`` bytes left: the write that crosses it fails with ENOSPC."""

    room = 0

    def write(self, data: Any) -> int:
        data = bytes(data)
        if self.tell() + len(data) > self.room:
            super().write(data[: max(0, self.room - self.tell())])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


@functools.cache
def dead_pid() -> int:
    """The pid of a process that has ended (a writer killed before it could clean up)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def killed_writers_leftover(folder: Path, name: str = "results.json") -> Path:
    """The temporary file a writer of ``folder / name`` leaves when it is killed mid-write (named as
    :func:`ttsr_lightning.files.temporary_path` names it, with a pid no process has now)."""
    folder.mkdir(parents=True, exist_ok=True)
    leftover = folder / f".{name}.{dead_pid()}.0123abcd{files.TEMPORARY_SUFFIX}"
    leftover.write_bytes(b"half a file")
    return leftover


def fill_disk_after(monkeypatch: pytest.MonkeyPatch, room: int) -> None:
    """Every atomic write from now on runs out of space after ``room`` bytes (an injected ENOSPC)."""
    monkeypatch.setattr(FullDisk, "room", room)
    monkeypatch.setattr(files, "open", lambda path, mode: FullDisk(path, mode), raising=False)
