"""A deterministic training data path: every item is a pure function of (seed, epoch, index).

The dataset's train-time frame jitter draws from torch's global RNG. Left alone, what a clip looks like
would depend on everything that consumed that RNG before it: the batch size, the accumulation count, the
number of workers, and — on resume — HF's order of fetching the first batches and restoring the RNG. Here
the sampler tags each index with its epoch and the dataset draws each item under its own seed, so a
resumed run, a run with another accumulation split and a run with more workers all see the same clips.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

ItemKey = tuple[int, int]  # (epoch, dataset index)


class EpochTaggedSampler(Sampler[ItemKey]):
    """Yields (epoch, index) for an index sampler whose order is a function of (seed, epoch).

    HF's Trainer (through accelerate) calls `set_epoch` at the start of every epoch, also on resume, where
    it then skips the batches already trained; the epoch tag follows it.
    """

    def __init__(self, sampler: Sampler[int]):
        if not hasattr(sampler, "set_epoch"):
            raise TypeError(
                f"{type(sampler).__name__} has no set_epoch: its order cannot be replayed on resume"
            )
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[ItemKey]:
        epoch = self.epoch
        self.sampler.set_epoch(epoch)
        for index in self.sampler:
            yield epoch, index
        self.epoch = epoch + 1  # a plain DataLoader never calls set_epoch


class EpochSeededDataset(Dataset):
    """Wraps a map-style dataset: item (epoch, index) is drawn with torch's RNG seeded from (seed, epoch, index).

    The global RNG is forked around each item, so loading data neither reads nor advances it.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: ItemKey):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, epoch, index))
            return self.dataset[index]


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed per (seed, epoch, index) (NumPy's SeedSequence hashing)."""
    words = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return int(words[0]) << 31 | int(words[1]) >> 1
