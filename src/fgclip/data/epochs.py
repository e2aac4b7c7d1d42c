"""A deterministic training data path: every item is a pure function of (seed, epoch, index).

The dataset's train-time frame jitter draws from torch's global RNG. Left alone, what a clip looks like
would depend on everything that consumed that RNG before it: the batch size, the accumulation count, the
number of workers, and — on resume — HF's order of fetching the first batches and restoring the RNG. Here
the sampler tags each index with its epoch and the dataset draws each item under its own seed, so a
resumed run, a run with another accumulation split and a run with more workers all see the same clips.
A clip that fails to decode is replaced the same way in every run (`EpochSeededDataset`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from fgclip.data.video import VideoError

logger = logging.getLogger(__name__)

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


class TooManyFailedClips(RuntimeError):
    """More distinct clips failed to decode than a run tolerates (`EpochSeededDataset.max_failed`)."""

    def __init__(self, message: str):
        # A DataLoader worker's exception is re-raised in the main process as this type with the worker's
        # traceback as its message: keep only this error's own last line, so the command prints one line.
        marker = f"{type(self).__name__}: "
        if "Original Traceback" in message and marker in message:
            message = message.rstrip().rpartition(marker)[2]
        super().__init__(message)


class EpochSeededDataset(Dataset):
    """Wraps a map-style dataset: item (epoch, index) is drawn with torch's RNG seeded from (seed, epoch, index).

    The global RNG is forked around each item, so loading data neither reads nor advances it.

    A clip whose frames cannot be decoded (`VideoError`: a file damaged after the start-up probe, or damage
    the header probe cannot see) is logged by name and replaced by the next index, in dataset order, that
    decodes, drawn under the failed key's seed: the replacement is a function of (seed, epoch, index) and the
    files (every candidate is tried afresh, nothing is remembered across items), so a resumed run draws the
    same one. Once more than `max_failed` distinct clips have failed (in this process: each DataLoader worker
    counts its own), `TooManyFailedClips` stops the run, so a broken dataset is not silently trained around.
    """

    def __init__(self, dataset: Dataset, seed: int, max_failed: int = 10):
        self.dataset, self.seed, self.max_failed = dataset, seed, max_failed
        self.failed: dict[int, str] = {}  # dataset index -> why it failed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: ItemKey):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            try:
                return self._draw(epoch, index, index)
            except VideoError as error:
                self._failed(index, error)
            # Every candidate is tried, also one that failed before: whether a clip decodes can depend on the
            # times drawn (damage late in a file), and a resumed run has no memory of earlier epochs.
            for offset in range(1, len(self.dataset)):
                candidate = (index + offset) % len(self.dataset)
                try:
                    item = self._draw(epoch, index, candidate)
                except VideoError as error:
                    self._failed(candidate, error)
                    continue
                logger.warning(
                    "[data] %s replaced by %s in epoch %d (its video failed to decode)",
                    self._name(index), self._name(candidate), epoch,
                )  # fmt: skip
                return item
        raise TooManyFailedClips(f"every one of the {len(self.dataset)} clips failed to decode")

    def _draw(self, epoch: int, index: int, candidate: int):
        """Item `candidate` under the seed of key (epoch, index)."""
        torch.manual_seed(item_seed(self.seed, epoch, index))
        return self.dataset[candidate]

    def _failed(self, index: int, error: VideoError) -> None:
        if index in self.failed:
            return  # named already
        self.failed[index] = str(error)
        logger.warning(
            "[data] clip %s cannot be decoded (%d of at most %d such clips, data.max_failed_clips): %s",
            self._name(index), len(self.failed), self.max_failed, error,
        )  # fmt: skip
        if len(self.failed) > self.max_failed:
            shown = "; ".join(f"{self._name(i)}: {why}" for i, why in list(self.failed.items())[:5])
            raise TooManyFailedClips(
                f"{len(self.failed)} distinct clips failed to decode during training (more than "
                f"data.max_failed_clips={self.max_failed}): {shown}. Run `fgclip data check --scan` on the "
                "manifests and fix or remove the videos it names."
            )

    def _name(self, index: int) -> str:
        clips = getattr(self.dataset, "clips", None)
        if clips is None:
            return f"item {index}"
        clip = clips[index]
        return f"{clip.sample_id} ({clip.video})"


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed per (seed, epoch, index) (NumPy's SeedSequence hashing)."""
    words = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return int(words[0]) << 31 | int(words[1]) >> 1
