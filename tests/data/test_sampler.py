"""Samplers: grouping, balancing, (seed, epoch) determinism, whole rounds for distributed training."""

from collections import Counter

import pytest

from fgclip.data.sampler import BalancedBatchSampler, GroupedShuffleSampler
from fgclip.training.callbacks import SamplerEpochCallback


def test_groups_stay_adjacent_and_order_depends_on_seed_and_epoch():
    groups = ["a", "b", "a", None, "c", "b", "c", None]
    sampler = GroupedShuffleSampler(groups, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(8))
    for name in ("a", "b", "c"):
        positions = [order.index(i) for i, g in enumerate(groups) if g == name]
        assert max(positions) - min(positions) == 1, (name, order)
    sampler.set_epoch(0)
    assert list(sampler) == order  # a pure function of (seed, epoch)
    orders = set()
    for epoch in range(5):
        sampler.set_epoch(epoch)
        orders.add(tuple(sampler))
    assert len(orders) > 1  # epochs reshuffle


def _batches(sampler, batch_size):
    order = list(sampler)
    assert len(order) == len(sampler)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def test_balanced_batches_are_half_and_half_and_cover_the_larger_class():
    labels = [0] * 13 + [1] * 5
    sampler = BalancedBatchSampler(labels, batch_size=4, seed=3)
    batches = _batches(sampler, 4)
    assert len(batches) == 7  # ceil(13 normal / 2 per batch)
    for batch in batches:
        assert sorted(labels[i] for i in batch) == [0, 0, 1, 1], batch
        assert len(set(batch)) == 4
    normal_seen = [i for b in batches for i in b if labels[i] == 0]
    assert set(normal_seen) == set(range(13))  # every normal clip once, the last batch topped up
    abnormal_seen = Counter(i for b in batches for i in b if labels[i] == 1)
    assert (
        set(abnormal_seen) == set(range(13, 18))
        and max(abnormal_seen.values()) - min(abnormal_seen.values()) <= 1
    )


def test_balanced_order_is_a_pure_function_of_seed_and_epoch():
    labels = [0] * 10 + [1] * 6
    sampler = BalancedBatchSampler(labels, batch_size=4, seed=1)
    first = list(sampler)
    assert list(sampler) != first  # the epoch advanced by itself (plain DataLoader)
    sampler.set_epoch(0)
    assert list(sampler) == first
    again = BalancedBatchSampler(labels, batch_size=4, seed=1)
    again.set_epoch(5)
    sampler.set_epoch(5)
    assert list(again) == list(sampler)
    assert list(BalancedBatchSampler(labels, batch_size=4, seed=2)) != first


def test_balanced_rounds_fill_every_rank_with_disjoint_clips():
    labels = [0] * 9 + [1] * 4
    sampler = BalancedBatchSampler(labels, batch_size=4, seed=0, world_size=2)
    batches = _batches(sampler, 4)
    assert len(batches) % 2 == 0  # whole rounds: accelerate never wraps around to the first batches
    for first in range(0, len(batches), 2):
        round_clips = batches[first] + batches[first + 1]
        assert len(set(round_clips)) == 8, round_clips  # 4 abnormal clips, all of them, none twice


def test_odd_batch_alternates_the_extra_slot():
    labels = [0] * 6 + [1] * 6
    batches = _batches(BalancedBatchSampler(labels, batch_size=3, seed=0), 3)
    assert [sum(labels[i] for i in b) for b in batches] == [1, 2, 1, 2]


def test_groups_put_scene_twins_in_one_batch():
    groups = [f"scene{i}" for i in range(8)] * 2
    labels = [0] * 8 + [1] * 8
    for batch in _batches(BalancedBatchSampler(labels, 4, seed=7, groups=groups), 4):
        assert sorted(groups[i] for i in batch if labels[i] == 0) == sorted(
            groups[i] for i in batch if labels[i] == 1
        )


def test_too_few_clips_of_a_class_is_an_error():
    with pytest.raises(ValueError, match="1 abnormal clips; batches of 4 on 2 rank"):
        BalancedBatchSampler([0] * 8 + [1], batch_size=4, seed=0, world_size=2)


def test_epoch_callback_follows_the_trainer_state():
    from types import SimpleNamespace

    sampler = BalancedBatchSampler([0, 0, 1, 1], batch_size=2, seed=0)
    callback = SamplerEpochCallback(sampler)
    callback.on_epoch_begin(None, SimpleNamespace(epoch=2.75), None)  # resumed three quarters into epoch 2
    assert sampler.epoch == 2
    callback.on_epoch_begin(None, SimpleNamespace(epoch=3.0), None)
    assert sampler.epoch == 3
