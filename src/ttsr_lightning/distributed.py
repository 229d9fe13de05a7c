"""Gathering Python objects from every rank (per-image results, panels) for the one rank that writes."""

from __future__ import annotations

from typing import Any, TypeVar

import torch.distributed as dist

T = TypeVar("T")


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_lists(items: list[T]) -> list[T]:
    """Every rank's ``items`` concatenated in rank order, on every rank (a collective: all ranks call
    it). Without an initialised process group, ``items`` itself."""
    if world_size() == 1:
        return list(items)
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, items)
    return [item for rank_items in gathered for item in rank_items]
