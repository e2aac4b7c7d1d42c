"""Training samplers. Orders are a pure function of (seed, epoch), so a resumed run replays them exactly."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class GroupedShuffleSampler(Sampler[int]):
    """Shuffle groups, shuffle inside each group, and keep each group's clips adjacent.

    Consecutive indices become one batch, so clips of one group (a scene: a normal clip and an abnormal clip
    of the same objects) usually share a batch. Without that, a contrastive loss can tell clips apart by
    their objects alone and never needs to see the event. Clips without a group are groups of one.
    """

    def __init__(self, groups: Sequence[str | None], seed: int):
        self.seed = seed
        self.epoch = 0
        members: dict[str, list[int]] = {}
        for index, group in enumerate(groups):
            members.setdefault(group if group is not None else f"\0{index}", []).append(index)
        self.groups = list(members.values())
        self.num_samples = len(groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.groups), generator=generator).tolist()
        for g in order:
            members = self.groups[g]
            for i in torch.randperm(len(members), generator=generator).tolist():
                yield members[i]
        self.epoch += 1  # advances even when nobody calls set_epoch (plain DataLoader)
