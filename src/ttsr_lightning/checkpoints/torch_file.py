"""A torch file, read and written: the one ``torch.load`` of every weights file, whose failures become
one :class:`UnreadableFile` naming the file, and the one atomic ``torch.save``."""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ttsr_lightning.errors import CheckpointError
from ttsr_lightning.files import atomic_write

KINDS_EXPECTED = (
    "a training run's Lightning checkpoint (.ckpt), the official TTSR.pt / TTSR-rec.pt, or a generator "
    "file from `python -m ttsr_lightning.official convert`"
)


class UnreadableFile(CheckpointError):
    """A file ``torch.load`` cannot read (missing, empty, truncated, not a torch file). The message is
    ``"<source>: <problem>; expected <the kinds>"``; ``problem`` alone serves a caller that words its
    own line (a resume's, which lists the loadable checkpoints beside it)."""

    def __init__(self, source: str, problem: str) -> None:
        self.problem = problem
        super().__init__(f"{source}: {problem}; expected {KINDS_EXPECTED}")


class ForeignObjects(UnreadableFile):
    """A readable pickle holding objects other than tensors and plain values, which ``weights_only``
    does not load (a Lightning checkpoint may hold another callback's)."""


def source_name(path: Path, key: str | None) -> str:
    """How messages name a file: ``key=path`` when a config key gave it, else the path."""
    return f"{key}={path}" if key else str(path)


def load_torch_file(path: Path, source: str, mmap: bool | None = None) -> object:
    """``torch.load(path, weights_only=True)`` on the CPU (no code runs from a file); ``mmap`` maps the
    tensors instead of reading them (zip-format files only; torch's default when None). Every failure is
    one UnreadableFile."""
    if not path.is_file():
        raise UnreadableFile(source, "no file there")
    if path.stat().st_size == 0:
        raise UnreadableFile(source, "the file is empty (0 bytes): its write was cut off")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            objects = "holds Python objects other than tensors and plain values, which are not loaded"
            raise ForeignObjects(source, f"{objects} (weights_only)") from exc
        raise UnreadableFile(source, _not_a_torch_file("not a pickle of tensors")) from exc
    except Exception as exc:  # a damaged file makes the unpickler fail in many ways (EOF, zip, ...)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnreadableFile(source, _not_a_torch_file(first_line)) from exc


def _not_a_torch_file(cause: str) -> str:
    return f"cannot be read as a torch file ({cause}); the file is truncated or not a checkpoint"


def top_level(loaded: object) -> object:
    """What a file holds at its top level, for a message: its first six keys, or its type's name."""
    return sorted(map(str, loaded))[:6] if isinstance(loaded, Mapping) else type(loaded).__name__


def save_torch_file(payload: Any, path: str | Path) -> None:
    """``torch.save(payload, path)``, atomically (:func:`ttsr_lightning.files.atomic_write`). Serialised
    in memory first: a full disk is then an OSError naming ``path``, not an error of torch's zip writer."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda file: file.write(buffer.getbuffer()))
