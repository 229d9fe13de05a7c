"""A sampler that hands the epoch to the dataset with every index, shards across ranks and resumes.

Epoch-dependent augmentation needs the epoch inside ``__getitem__``, which runs in loader workers
that (with ``persistent_workers``) outlive the epoch. Rather than mutating the dataset, the sampler,
which lives in the main process, yields ``(epoch, index)`` keys; the dataset seeds each sample from
them. Lightning calls ``set_epoch`` on the sampler at the start of every training epoch (with the
restored epoch on resume), so nothing is needed from the LightningModule. Outside Lightning, call
``set_epoch`` yourself.

Under DDP (``torch.distributed`` initialised) each rank takes every ``world_size``-th position of the
epoch's order, padded by wrapping around so that every rank runs the same number of batches (as
``DistributedSampler``); the trainer's ``use_distributed_sampler`` stays off.

Mid-epoch resume: ``skip(epoch, samples)`` makes the next iteration of that epoch start after the
first ``samples`` positions of this rank's share; the skipped ones follow at the end, where Lightning,
which counts the batches it already ran, never reaches them. A resumed run thus draws exactly the
batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch.distributed as dist
from torch.utils.data import Sampler

from ttsr_lightning.data.seeding import shuffle_generator


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` for each of ``indices``, in a seeded order per epoch.

    Args:
        indices: dataset indices to draw from (e.g. the training pairs that are not held out).
        shuffle: a new order each epoch, a permutation drawn from (seed, epoch); else ``indices`` order.
        seed: seed of the order (non-negative).
        num_replicas, rank: the DDP share to yield; None = read from ``torch.distributed`` when it is
            initialised at iteration time (else one replica).
    """

    def __init__(
        self,
        indices: Sequence[int],
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if seed < 0:
            raise ValueError(f"EpochSampler seed must be >= 0, got {seed}")
        if not indices:
            raise ValueError("EpochSampler needs at least one index")
        self.indices = list(indices)
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._skip: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Epoch of the keys yielded by the next iteration."""
        self.epoch = epoch

    def skip(self, epoch: int, samples: int) -> None:
        """Start the next iteration of ``epoch`` after this rank's first ``samples`` positions (once)."""
        if samples < 0:
            raise ValueError(f"cannot skip a negative number of samples ({samples})")
        self._skip = (epoch, samples)

    def _replicas(self) -> tuple[int, int]:
        if self.num_replicas is not None:
            return self.num_replicas, self.rank or 0
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self._replicas()[0])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = shuffle_generator(self.seed, self.epoch).permutation(len(self.indices)).tolist()
        else:
            order = list(range(len(self.indices)))
        num_replicas, rank = self._replicas()
        per_rank = math.ceil(len(order) / num_replicas)
        padded = (order * math.ceil(per_rank * num_replicas / len(order)))[: per_rank * num_replicas]
        share = padded[rank::num_replicas]
        if self._skip is not None and self._skip[0] == self.epoch:
            start = min(self._skip[1], len(share))
            share = share[start:] + share[:start]
        self._skip = None
        epoch = self.epoch
        return iter([(epoch, self.indices[position]) for position in share])
