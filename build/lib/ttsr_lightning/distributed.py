"""Gathering Python objects from every rank (per-image results, panels) for the one rank that writes."""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch.distributed as dist

T = TypeVar("T")


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def launched_as_rank_zero() -> bool:
    """Whether this process is the first of its run, read from the launchers' environment (so it works
    before any process group exists): Lightning's DDP launcher starts the other ranks with
    ``LOCAL_RANK`` >= 1, torchrun and SLURM set ``RANK`` / ``SLURM_PROCID``, other nodes ``NODE_RANK``."""
    ranks = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")
    return all(os.environ.get(name, "0").strip() in ("", "0") for name in ranks)


def gather_lists(items: list[T]) -> list[T]:
    """Every rank's ``items`` concatenated in rank order, on every rank (a collective: all ranks call
    it). Without an initialised process group, ``items`` itself."""
    if world_size() == 1:
        return list(items)
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, items)
    return [item for rank_items in gathered for item in rank_items]
