"""Read what an offline W&B run recorded (``<save_dir>/wandb/offline-run-*/run-<id>.wandb``): its exit
status, whether it was marked preempted, and the logged history rows."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

_BLOCK = 32768  # the file is a log of 32 KiB blocks; a record's chunks carry a 7-byte header
_HEADER = 7  # ":W&B", a 2-byte magic number and a version byte, then the same sized chunk headers
_FULL, _LAST = 1, 4


@dataclass
class OfflineRun:
    run_id: str
    exit_code: int | None = None
    preempting: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def read_offline_run(path: Path) -> OfflineRun:
    """The records of one ``run-<id>.wandb`` file."""
    run = OfflineRun(run_id=path.stem.removeprefix("run-"))
    for record in _records(path.read_bytes()):
        kind = record.WhichOneof("record_type")
        if kind == "exit":
            run.exit_code = record.exit.exit_code
        elif kind == "preempting":
            run.preempting = True
        elif kind == "history":
            items = record.history.item
            run.history.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}
            )
    return run


def offline_runs(save_dir: Path) -> list[OfflineRun]:
    """Every offline run below ``save_dir``, oldest first."""
    return [read_offline_run(p) for p in sorted((save_dir / "wandb").glob("offline-run-*/run-*.wandb"))]


def _records(data: bytes) -> Iterator[Any]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run file")
    position, pending = _HEADER, b""
    while position + 7 <= len(data):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < 7:  # block padding
            position += left_in_block
            continue
        _checksum, length, chunk_type = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if chunk_type in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record
