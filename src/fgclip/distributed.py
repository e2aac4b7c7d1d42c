"""Every collective of the project lives here. At world size 1 (no process group) each is the identity.

`Shard` is how work over a list (videos to evaluate, export or score) is split: shard i of n takes items
i, i + n, i + 2n, ... -- disjoint, deterministic, the same under `torchrun` (shard = rank) and for array jobs
(`--shard I/N`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn


def get_world_size_and_rank() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def is_rank_zero() -> bool:
    return get_world_size_and_rank()[1] == 0


def gather_rows(tensor: torch.Tensor, *, grad: bool) -> tuple[torch.Tensor, int]:
    """Concatenate `tensor` from all ranks along dim 0; return it and the offset of this rank's rows.

    With `grad=True` gradients flow back to every rank's rows (local-loss contrastive form); with
    `grad=False` the result is detached (memory-bank writes, evaluation). Ranks may hold different numbers
    of rows (a batch's valid regions vary), so rows are padded to the largest count for the collective and
    the padding is dropped afterwards.
    """
    world_size, rank = get_world_size_and_rank()
    if world_size == 1:
        return (tensor if grad else tensor.detach()), 0
    counts = _row_counts(tensor)
    padded = _pad_rows(tensor if grad else tensor.detach(), max(counts))
    if grad:
        parts = dist_nn.all_gather(padded)
    else:
        parts = [torch.empty_like(padded) for _ in range(world_size)]
        dist.all_gather(parts, padded)
    gathered = torch.cat([part[:n] for part, n in zip(parts, counts, strict=True)])
    return gathered, sum(counts[:rank])


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, detached, returned as a new tensor."""
    tensor = tensor.detach().clone()
    if get_world_size_and_rank()[0] > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj) -> list:
    """One picklable object from every rank, in rank order (small things only: ids, names, digests)."""
    world_size, _ = get_world_size_and_rank()
    if world_size == 1:
        return [obj]
    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def _row_counts(tensor: torch.Tensor) -> list[int]:
    world_size, _ = get_world_size_and_rank()
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    return [int(c.item()) for c in counts]


def _pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    if tensor.shape[0] == rows:
        return tensor.contiguous()
    padding = tensor.new_zeros(rows - tensor.shape[0], *tensor.shape[1:])
    return torch.cat([tensor, padding]).contiguous()


def init_from_environment() -> str | None:
    """Join the process group `torchrun` describes (WORLD_SIZE > 1 in the environment); do nothing otherwise.
    Returns the device this rank should use (`cuda:LOCAL_RANK` with CUDA, else None: the caller's default)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return None
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return None


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: videos index, index + count, ... of the input list (deterministic, disjoint)."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if not 0 <= self.index < self.count:
            raise ValueError(f"--shard {self.index}/{self.count}: must be I/N with 0 <= I < N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
        if not match:
            raise ValueError(f"--shard must look like I/N (e.g. 0/4), got {text!r}")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def of_rank(cls) -> Shard:
        world_size, rank = get_world_size_and_rank()
        return cls(rank, world_size)

    def positions(self, total: int) -> range:
        return range(self.index, total, self.count)

    def take(self, items: list) -> list:
        return [items[i] for i in self.positions(len(items))]
