"""EpochSampler: (epoch, index) keys in a seeded order; the same batches with any worker count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import DataLoader

from ttsr_lightning.data import CUFEDTrainDataset, EpochSampler


def test_yields_epoch_and_index_keys_in_a_seeded_order() -> None:
    sampler = EpochSampler([3, 5, 7, 9, 11], shuffle=True, seed=1)
    first = list(sampler)
    assert len(sampler) == 5 and all(epoch == 0 for epoch, _ in first)
    assert sorted(index for _, index in first) == [3, 5, 7, 9, 11]
    assert list(EpochSampler([3, 5, 7, 9, 11], shuffle=True, seed=1)) == first  # the same seed, the same
    assert [index for _, index in first] != [3, 5, 7, 9, 11]  # shuffled
    assert list(EpochSampler([3, 5, 7, 9, 11], shuffle=True, seed=2)) != first  # another seed, another
    orders = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        assert {e for e, _ in keys} == {epoch}
        orders.append([index for _, index in keys])
    assert len({tuple(order) for order in orders}) > 1


def test_without_shuffle_keeps_the_given_order() -> None:
    sampler = EpochSampler([4, 2, 9], shuffle=False)
    sampler.set_epoch(6)
    assert list(sampler) == [(6, 4), (6, 2), (6, 9)]


def test_negative_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="seed must be >= 0"):
        EpochSampler([0], seed=-2)


def batches(dataset: CUFEDTrainDataset, num_workers: int, epochs: int) -> list[torch.Tensor]:
    sampler = EpochSampler(range(len(dataset)), shuffle=True, seed=4)
    loader = DataLoader(
        dataset, batch_size=2, sampler=sampler, num_workers=num_workers, persistent_workers=num_workers > 0
    )
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        out += [torch.cat([batch["hr"], batch["ref"]]) for batch in loader]
    return out


def test_same_batches_with_zero_and_two_persistent_workers(shared_cufed_train: Path) -> None:
    dataset = CUFEDTrainDataset(shared_cufed_train, seed=4)
    serial, parallel = batches(dataset, 0, 2), batches(dataset, 2, 2)
    assert len(serial) == 4
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))
    assert not torch.equal(serial[0], serial[2]) or not torch.equal(serial[1], serial[3])  # epochs differ


def test_under_lightnings_ddp_wrapper_each_rank_gets_the_epoch_and_a_share() -> None:
    keys = []
    for rank in range(2):
        wrapper = DistributedSamplerWrapper(
            EpochSampler(range(6), seed=2), num_replicas=2, rank=rank, shuffle=False
        )
        wrapper.set_epoch(4)  # Lightning forwards this to our sampler
        keys += list(wrapper)
    assert {epoch for epoch, _ in keys} == {4}
    assert sorted(index for _, index in keys) == list(range(6))


def test_ranks_share_an_epoch_without_overlap_and_with_equal_lengths() -> None:
    indices = list(range(10, 17))  # 7 indices over 2 ranks: one position is repeated to even out
    shares = [list(EpochSampler(indices, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert [len(s) for s in shares] == [4, 4]
    drawn = [index for share in shares for _, index in share]
    assert sorted(set(drawn)) == indices
    assert len(drawn) - len(set(drawn)) == 1


def test_skip_resumes_the_epoch_where_it_stopped_and_only_once() -> None:
    sampler = EpochSampler(list(range(12)), seed=5)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.skip(epoch=2, samples=8)
    resumed = list(sampler)
    assert resumed[:4] == full[8:]  # what Lightning still runs of the epoch
    assert sorted(resumed) == sorted(full)  # same length: the loader's length is unchanged
    assert list(sampler) == full  # the next iteration of the epoch is whole again


def test_skip_for_another_epoch_changes_nothing() -> None:
    sampler = EpochSampler(list(range(6)), seed=1)
    sampler.set_epoch(4)
    expected = list(sampler)
    sampler.skip(epoch=3, samples=2)
    assert list(sampler) == expected
