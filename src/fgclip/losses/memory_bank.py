"""Cross-batch region memory bank: extra negatives for the region loss on small video batches.

A FIFO ring (optionally one ring per label, so a flood of normal regions cannot evict the rare abnormal
ones) of detached region image embeddings, region text embeddings, caption keys, labels and the optimizer
step each entry was written at. Everything is a registered buffer: it is saved with every checkpoint and a
resumed run continues with the same contents and pointers.

The bank has one owner, `fgclip.losses.task.AlignmentTask`: it switches the bank on when the optimizer step
(never a forward count) reaches the warm-up, reads it for the loss, and writes it after the loss with rows
all-gathered from every rank first, so every rank holds the identical bank. The model only holds it in its
`memory_bank` slot, which is what puts it into checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fgclip.losses.contrastive import RegionNegatives

EMPTY = -1  # `steps` value of a slot never written


@dataclass(frozen=True)
class MemoryBankOptions:
    """The run config's `bank` section. `size` 0 means no bank (in-batch negatives only)."""

    size: int = 128  # entries (regions), 0 for none; split equally between the two queues with per_label
    warmup_steps: int = 50  # optimizer steps before the region loss sees banked negatives
    per_label: bool = False  # one queue per label, so normal regions cannot evict the rare abnormal ones
    max_age: int | None = None  # entries older than this many optimizer steps are not used
    fill_during_warmup: bool = True  # write during warm-up, so the bank is full when it switches on

    def __post_init__(self):
        if self.size < 0 or self.warmup_steps < 0:
            raise ValueError(
                f"bank.size ({self.size}) and bank.warmup_steps ({self.warmup_steps}) must be >= 0"
            )
        if self.max_age is not None and self.max_age < 1:
            raise ValueError(f"bank.max_age must be >= 1 optimizer step or null, got {self.max_age}")
        if self.per_label and 0 < self.size < 2:
            raise ValueError(f"bank.size={self.size} is too small for two per-label queues")

    @property
    def enabled(self) -> bool:
        return self.size > 0


class RegionMemoryBank(nn.Module):
    def __init__(self, dim: int, capacity: int, *, per_label: bool = False, max_age: int | None = None):
        super().__init__()
        num_queues = 2 if per_label else 1
        if capacity < num_queues:
            raise ValueError(f"bank size {capacity} is too small for {num_queues} queue(s)")
        self.capacity, self.num_queues, self.max_age = capacity, num_queues, max_age
        self.queue_size = capacity // num_queues  # per-label queues share the capacity equally
        slots = self.queue_size * num_queues
        self.register_buffer("image_embeds", torch.zeros(slots, dim))
        self.register_buffer("text_embeds", torch.zeros(slots, dim))
        self.register_buffer("caption_keys", torch.zeros(slots, dtype=torch.long))
        self.register_buffer("labels", torch.zeros(slots, dtype=torch.long))
        self.register_buffer("steps", torch.full((slots,), EMPTY, dtype=torch.long))
        self.register_buffer("pointers", torch.zeros(num_queues, dtype=torch.long))
        self.register_buffer("enabled", torch.zeros((), dtype=torch.bool))

    @classmethod
    def from_options(cls, dim: int, options: MemoryBankOptions) -> RegionMemoryBank:
        return cls(dim, options.size, per_label=options.per_label, max_age=options.max_age)

    # ---------------------------------------------------------------------------------------------- state
    @property
    def is_enabled(self) -> bool:
        return bool(self.enabled)

    def enable(self) -> None:
        self.enabled.fill_(True)

    def filled(self) -> int:
        return int((self.steps != EMPTY).sum())

    def usable(self, step: int) -> torch.Tensor:
        """(slots,) bool: written, and not older than `max_age` optimizer steps."""
        written = self.steps != EMPTY
        if self.max_age is None:
            return written
        return written & (step - self.steps <= self.max_age)

    # ---------------------------------------------------------------------------------------- read/write
    def read(self, step: int) -> RegionNegatives:
        keep = self.usable(step)
        return RegionNegatives(self.image_embeds[keep], self.text_embeds[keep], self.caption_keys[keep])

    @torch.no_grad()
    def write(self, image_embeds, text_embeds, caption_keys, labels, step: int) -> None:
        """Append rows (already gathered from every rank); any count, also more than the capacity."""
        for queue in range(self.num_queues):
            rows = labels == queue if self.num_queues > 1 else torch.ones_like(labels, dtype=torch.bool)
            self._write_queue(
                queue, image_embeds[rows], text_embeds[rows], caption_keys[rows], labels[rows], step
            )

    def _write_queue(self, queue: int, image_embeds, text_embeds, caption_keys, labels, step: int) -> None:
        count = image_embeds.shape[0]
        if count == 0:
            return
        if count > self.queue_size:  # only the newest fit; FIFO drops the rest at once
            image_embeds, text_embeds = image_embeds[-self.queue_size :], text_embeds[-self.queue_size :]
            caption_keys, labels = caption_keys[-self.queue_size :], labels[-self.queue_size :]
        start = int(self.pointers[queue])
        offsets = (start + torch.arange(count, device=self.steps.device)) % self.queue_size
        slots = queue * self.queue_size + offsets[-image_embeds.shape[0] :]  # (n,)
        self.image_embeds[slots] = image_embeds.detach().to(self.image_embeds.dtype)
        self.text_embeds[slots] = text_embeds.detach().to(self.text_embeds.dtype)
        self.caption_keys[slots] = caption_keys
        self.labels[slots] = labels
        self.steps[slots] = step
        self.pointers[queue] = (start + count) % self.queue_size

    # ------------------------------------------------------------------------------------------- report
    def report(self, query_keys: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Per-step figures: enabled, size, mean age, bank negatives per query, masked duplicates."""
        keep = self.usable(step)
        size = keep.sum()
        ages = (step - self.steps[keep]).float()
        result = {
            "memory_bank/enabled": self.enabled.float(),
            "memory_bank/size": size.float(),
            "memory_bank/mean_age": ages.mean() if ages.numel() else ages.new_tensor(0.0),
        }
        if self.is_enabled:
            same = query_keys.unsqueeze(1) == self.caption_keys[keep].unsqueeze(0)  # (M, Q)
            per_query = size - same.sum(1)  # (M,)
            result["memory_bank/negatives_per_query"] = (
                per_query.float().mean() if per_query.numel() else size.float()
            )
            result["memory_bank/masked_duplicates"] = same.sum().float()
        else:
            result["memory_bank/negatives_per_query"] = ages.new_tensor(0.0)
            result["memory_bank/masked_duplicates"] = ages.new_tensor(0.0)
        return result
