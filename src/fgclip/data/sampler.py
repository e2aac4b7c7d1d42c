"""Training samplers. Orders are a pure function of (seed, epoch), so a resumed run replays them exactly.

Distributed training. Both samplers are rank-agnostic: every rank builds the same global order, in which each
consecutive run of `batch_size` indices is one batch. Under `torchrun` the HF Trainer puts the sampler into a
DataLoader of `per_device_train_batch_size` and `accelerator.prepare` wraps its batch sampler in accelerate's
`BatchSamplerShard` (split_batches=False), which gives rank r the whole batches r, r + N, r + 2N, ... of that
global order (transformers 5.x `Trainer._get_dataloader`; accelerate `prepare_data_loader`). So ranks get
disjoint batches, each one exactly as the sampler built it — a balanced sampler must therefore balance every
batch of `batch_size`, not every global batch, and must NOT shard by rank itself (it would be sharded twice).
`BalancedBatchSampler` also makes its number of batches a multiple of the world size (accelerate would
otherwise wrap around to the first batches, `even_batches`) and never repeats a clip within one round of N
batches, so the N batches trained on together in one step are disjoint even when the smaller class is
oversampled. Tested with a real 2-process gloo run through the Trainer (tests/data/test_sampler_ddp.py).

Resume. The Trainer calls `set_epoch(epoch)` on the sampler through the DataLoader, except in the one case
that matters for resuming: when it resumes inside an epoch it iterates a `skip_first_batches` copy of the
loader whose `set_epoch` no longer reaches the sampler, which then replays epoch 0's order (or whatever its
counter says). `fgclip.training.callbacks.SamplerEpochCallback` sets the epoch from the Trainer state at every epoch start, so the
resumed epoch replays the order it had.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from fgclip.data.records import ABNORMAL, NORMAL


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def _group_members(groups: Sequence[str | None]) -> list[list[int]]:
    """Indices per group, in first-appearance order; clips without a group are groups of one."""
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group if group is not None else f"\0{index}", []).append(index)
    return list(members.values())


class GroupedShuffleSampler(Sampler[int]):
    """Shuffle groups, shuffle inside each group, and keep each group's clips adjacent.

    Consecutive indices become one batch, so clips of one group (a scene: a normal clip and an abnormal clip
    of the same objects) usually share a batch. Without that, a contrastive loss can tell clips apart by
    their objects alone and never needs to see the event. Clips without a group are groups of one.
    """

    def __init__(self, groups: Sequence[str | None], seed: int):
        self.seed = seed
        self.epoch = 0
        self.groups = _group_members(groups)
        self.num_samples = len(groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = _generator(self.seed, self.epoch)
        order = torch.randperm(len(self.groups), generator=generator).tolist()
        for g in order:
            members = self.groups[g]
            for i in torch.randperm(len(members), generator=generator).tolist():
                yield members[i]
        self.epoch += 1  # advances even when nobody calls set_epoch (plain DataLoader)


class BalancedBatchSampler(Sampler[int]):
    """Every batch of `batch_size` consecutive indices is half normal, half abnormal clips.

    An epoch visits each clip of the larger class once (its last batch topped up from a new pass) and
    oversamples the smaller class by cycling through it in fresh shuffled passes. With an odd batch size the
    extra slot alternates between the classes from batch to batch. With `groups`, both classes follow one
    shuffled order of groups, so the normal and abnormal clips of a scene land in the same batch when the
    classes are equally large (the synthetic twins); members of a group are shuffled within it.
    """

    def __init__(
        self,
        labels: Sequence[int],
        batch_size: int,
        seed: int,
        groups: Sequence[str | None] | None = None,
        world_size: int = 1,
    ):
        if batch_size < 2:
            raise ValueError(
                f"data.balance needs a batch size of at least 2 (one clip per class), got {batch_size}"
            )
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        unknown = sorted({label for label in labels} - {NORMAL, ABNORMAL})
        if unknown:
            raise ValueError(f"labels must be {NORMAL} (normal) or {ABNORMAL} (abnormal), got {unknown}")
        self.batch_size, self.seed, self.world_size, self.epoch = batch_size, seed, world_size, 0
        self.labels = list(labels)
        self.groups = _group_members(groups if groups is not None else [None] * len(labels))
        counts = {label: self.labels.count(label) for label in (NORMAL, ABNORMAL)}
        per_round = {label: self._quota_sum(label, range(world_size)) for label in (NORMAL, ABNORMAL)}
        short = [label for label in (NORMAL, ABNORMAL) if counts[label] < per_round[label]]
        if short:
            raise ValueError(
                f"data.balance: {counts[NORMAL]} normal and {counts[ABNORMAL]} abnormal clips; batches of "
                f"{batch_size} on {world_size} rank(s) need at least {per_round[NORMAL]} normal and "
                f"{per_round[ABNORMAL]} abnormal clips so one step never holds a clip twice"
            )
        self.num_batches = self._num_batches(counts)

    def _quota(self, label: int, batch: int) -> int:
        """Clips of `label` in batch number `batch` (the odd slot alternates: normal on even batches)."""
        half, odd = divmod(self.batch_size, 2)
        extra_normal = odd and batch % 2 == 0
        return half + (int(extra_normal) if label == NORMAL else odd - int(extra_normal))

    def _quota_sum(self, label: int, batches) -> int:
        return sum(self._quota(label, b) for b in batches)

    def _num_batches(self, counts: dict[int, int]) -> int:
        major = max((NORMAL, ABNORMAL), key=lambda label: counts[label])
        batches = 0
        while self._quota_sum(major, range(batches)) < counts[major]:
            batches += 1
        return max(1, math.ceil(batches / self.world_size)) * self.world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def __iter__(self) -> Iterator[int]:
        base = self.seed * 100_003 + self.epoch
        streams = {label: _ClassStream(self.groups, self.labels, label, base) for label in (NORMAL, ABNORMAL)}
        for first in range(0, self.num_batches, self.world_size):
            used: set[int] = set()  # one round = the N batches trained on together: no clip twice
            for batch in range(first, first + self.world_size):
                for label in (NORMAL, ABNORMAL):
                    taken = streams[label].take(self._quota(label, batch), used)
                    used.update(taken)
                    yield from taken
        self.epoch += 1  # advances even when nobody calls set_epoch (plain DataLoader)


class _ClassStream:
    """An endless order of one class's clips: passes over the groups, each pass freshly shuffled.

    Pass k orders the groups by a permutation drawn from (seed, epoch, k) alone, the same for both classes,
    so a scene's normal and abnormal clips sit at the same place of their streams.
    """

    def __init__(self, groups: list[list[int]], labels: list[int], label: int, seed: int):
        self.groups = [[i for i in members if labels[i] == label] for members in groups]
        self.seed, self.label = seed, label
        self.passes = 0
        self.queue: deque[int] = deque()

    def _refill(self, avoid: set[int]) -> None:
        order = torch.Generator().manual_seed(self.seed * 1009 + self.passes)
        inner = torch.Generator().manual_seed((self.seed * 1009 + self.passes) * 2 + self.label)
        self.passes += 1
        clips = []
        for g in torch.randperm(len(self.groups), generator=order).tolist():
            members = self.groups[g]
            clips.extend(members[i] for i in torch.randperm(len(members), generator=inner).tolist())
        # Clips already used in the current round go to the end of the new pass: a pass stays a permutation
        # and the round never holds a clip twice.
        self.queue.extend([i for i in clips if i not in avoid] + [i for i in clips if i in avoid])

    def take(self, count: int, used: set[int]) -> list[int]:
        taken: list[int] = []
        while len(taken) < count:
            if not self.queue:
                self._refill(used | set(taken))
            taken.append(self.queue.popleft())
        return taken
