"""DataLoader construction shared by the DataModules."""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import multiprocessing.util  # registers its exit handler before ours: ours runs first (atexit is LIFO)
import signal
import threading
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from ttsr_lightning.data.eval_dataset import EvalDataset


class RankShardSampler(Sampler[int]):
    """Dataset order, this rank's every ``world_size``-th image under DDP, without padding.

    Unlike ``DistributedSampler`` it repeats no image to even out the ranks (evaluation needs no
    equal step counts), so per-image metrics summed over the ranks count every image exactly once.
    """

    def __init__(self, length: int) -> None:
        self.length = length

    def _share(self) -> range:
        if dist.is_available() and dist.is_initialized():
            return range(dist.get_rank(), self.length, dist.get_world_size())
        return range(self.length)

    def __len__(self) -> int:
        return len(self._share())

    def __iter__(self) -> Iterator[int]:
        return iter(self._share())


def evaluation_loader(
    dataset: EvalDataset, num_workers: int, pin_memory: bool, persistent_workers: bool
) -> DataLoader:
    """Whole images in dataset order, batch size 1 (images differ in size); no randomness involved.

    Under DDP each rank evaluates its own share of the images (``RankShardSampler``).
    The loader has its own generator: every iterator draws a base seed from it, which would otherwise
    come from the global torch RNG, so validation would shift the training's random numbers, and
    differently after a resume (Lightning's resumed loops create fewer validation iterators).
    """
    return DataLoader(
        dataset,
        batch_size=1,
        sampler=RankShardSampler(len(dataset)),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        generator=torch.Generator(),
        worker_init_fn=ignore_stop_signals,
    )


def ignore_stop_signals(worker_id: int) -> None:
    """Loader workers ignore SIGTERM and SIGUSR1, which a scheduler sends to every process of a job: the
    main process checkpoints and stops, and its workers end with it. (Without this a worker would die at
    once and the main process would fail on the lost worker before writing its checkpoint.)"""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def _end_loader_workers() -> None:
    """At interpreter exit, multiprocessing ends its daemonic children (loader workers among them) with
    SIGTERM and then joins them; a worker that ignores SIGTERM (``ignore_stop_signals``) would never end,
    and the process would wait for it forever. Persistent workers still alive then (their loader is
    still referenced) are ended here first, with SIGKILL, which nothing ignores. PyTorch's SIGCHLD
    handler, which reports a worker's death as an error, is set aside first: these deaths are wanted."""
    children = [child for child in multiprocessing.active_children() if child.daemon]
    if not children:
        return
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.kill()
    for child in children:
        with contextlib.suppress(Exception):
            child.join(timeout=10)


atexit.register(_end_loader_workers)


def check_loader_arguments(key: str, batch_size: int, num_workers: int) -> None:
    """ValueError naming config ``key`` for a batch size < 1 or a negative worker count."""
    if batch_size < 1:
        raise ValueError(f"{key}.batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"{key}.num_workers must be >= 0, got {num_workers}")
