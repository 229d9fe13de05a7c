"""A sampler that hands the epoch to the dataset with every index.

Epoch-dependent augmentation needs the epoch inside ``__getitem__``, which runs in loader workers
that (with ``persistent_workers``) outlive the epoch. Rather than mutating the dataset, the sampler,
which lives in the main process, yields ``(epoch, index)`` keys; the dataset seeds each sample from
them. Lightning calls ``set_epoch`` on the sampler at the start of every training epoch (also through
its ``DistributedSamplerWrapper`` under DDP, and with the restored epoch on resume), so nothing is
needed from the LightningModule. Outside Lightning, call ``set_epoch`` yourself.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler

from ttsr_lightning.data.seeding import shuffle_generator


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` for each of ``indices``, in a seeded order per epoch.

    Args:
        indices: dataset indices to draw from (e.g. the training pairs that are not held out).
        shuffle: a new order each epoch, a permutation drawn from (seed, epoch); else ``indices`` order.
        seed: seed of the order (non-negative).
    """

    def __init__(self, indices: Sequence[int], shuffle: bool = True, seed: int = 0) -> None:
        if seed < 0:
            raise ValueError(f"EpochSampler seed must be >= 0, got {seed}")
        self.indices = list(indices)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch of the keys yielded by the next iteration."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = shuffle_generator(self.seed, self.epoch).permutation(len(self.indices)).tolist()
        else:
            order = list(range(len(self.indices)))
        epoch = self.epoch
        return iter([(epoch, self.indices[position]) for position in order])
