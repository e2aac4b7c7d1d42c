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
    # Fresh text negatives: the newest N usable entries' captions are re-encoded by the current text tower at
    # every step (with gradient), so that part of the bank's text side is never stale. 0 = off.
    fresh_text: int = 0
    text_length: int = 77  # token ids stored per entry for fresh_text (region captions are padded to it)
    # Momentum (EMA, MoCo-style) copy of the vision tower + roi_projection: banked region image embeddings
    # come from it (ema = m * ema + (1 - m) * online after each optimizer step). None = off.
    momentum: float | None = None
    # A checkpoint written with both off has none of their buffers: it resumes only with both off.

    def __post_init__(self):
        if self.size < 0 or self.warmup_steps < 0:
            raise ValueError(
                f"bank.size ({self.size}) and bank.warmup_steps ({self.warmup_steps}) must be >= 0"
            )
        if self.max_age is not None and self.max_age < 1:
            raise ValueError(f"bank.max_age must be >= 1 optimizer step or null, got {self.max_age}")
        if self.per_label and 0 < self.size < 2:
            raise ValueError(f"bank.size={self.size} is too small for two per-label queues")
        if self.fresh_text < 0:
            raise ValueError(f"bank.fresh_text must be >= 0 entries (0 = off), got {self.fresh_text}")
        if self.fresh_text > self.size:
            raise ValueError(
                f"bank.fresh_text ({self.fresh_text}) re-encodes banked captions: it must be <= bank.size "
                f"({self.size})"
            )
        if self.text_length < 2:
            raise ValueError(f"bank.text_length must be >= 2 tokens (BOS + EOS), got {self.text_length}")
        if self.momentum is not None and not 0.0 <= self.momentum < 1.0:
            raise ValueError(
                f"bank.momentum is the EMA decay m in ema = m * ema + (1 - m) * online: it must be in [0, 1) "
                f"or null (off), got {self.momentum}"
            )

    @property
    def enabled(self) -> bool:
        return self.size > 0


class RegionMemoryBank(nn.Module):
    def __init__(
        self,
        dim: int,
        capacity: int,
        *,
        per_label: bool = False,
        max_age: int | None = None,
        text_length: int | None = None,
    ):
        """`text_length` set: the bank also stores each entry's caption token ids and attention mask, padded
        to that length (for fresh text negatives). Unset, those buffers do not exist (checkpoints without
        them load as before)."""
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
        self.text_length = text_length
        self.momentum_encoder: nn.Module | None = None  # set by the task when bank.momentum is on
        if text_length is not None:
            self.register_buffer("caption_ids", torch.zeros(slots, text_length, dtype=torch.long))
            self.register_buffer("caption_mask", torch.zeros(slots, text_length, dtype=torch.long))

    @classmethod
    def from_options(cls, dim: int, options: MemoryBankOptions) -> RegionMemoryBank:
        text_length = options.text_length if options.fresh_text else None
        return cls(
            dim, options.size, per_label=options.per_label, max_age=options.max_age, text_length=text_length
        )

    @property
    def stores_text(self) -> bool:
        return self.text_length is not None

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

    def newest(self, step: int, count: int) -> torch.Tensor:
        """(n,) positions, within `read(step)`'s rows, of the newest `count` usable entries (n <= count).

        Newest by write step, then by position in its queue's ring (the last row written first); ties
        across queues go to the lower queue. Depends only on the bank's buffers, so it picks the same rows on
        every rank.
        """
        keep = self.usable(step)
        slots = torch.arange(self.steps.shape[0], device=self.steps.device)  # (S,)
        queue, offset = slots // self.queue_size, slots % self.queue_size
        recency = (self.pointers[queue] - 1 - offset) % self.queue_size  # (S,) 0 = the queue's last write
        # one integer key: newer step first, then more recent in the ring, then the lower queue
        order_key = (self.steps * self.queue_size + (self.queue_size - 1 - recency)) * self.num_queues
        order_key = order_key + (self.num_queues - 1 - queue)
        order_key = order_key[keep]  # (U,)
        count = min(count, order_key.shape[0])
        return torch.sort(order_key, descending=True, stable=True).indices[:count]

    def texts(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, text_length) caption ids and mask of `read(step)`'s rows (the bank must store text)."""
        keep = self.usable(step)
        return self.caption_ids[keep], self.caption_mask[keep]

    @torch.no_grad()
    def write(
        self,
        image_embeds,
        text_embeds,
        caption_keys,
        labels,
        step: int,
        caption_ids: torch.Tensor | None = None,
        caption_mask: torch.Tensor | None = None,
    ) -> None:
        """Append rows (already gathered from every rank); any count, also more than the capacity.

        A bank that stores text needs `caption_ids` / `caption_mask` (N, text_length) with the rows."""
        columns = {"image_embeds": image_embeds, "text_embeds": text_embeds}
        columns.update(caption_keys=caption_keys, labels=labels)
        if self.stores_text:
            if caption_ids is None or caption_mask is None:
                raise ValueError(
                    "this bank stores caption ids (bank.fresh_text > 0): write them with the rows"
                )
            columns.update(caption_ids=caption_ids, caption_mask=caption_mask)
        for queue in range(self.num_queues):
            rows = labels == queue if self.num_queues > 1 else torch.ones_like(labels, dtype=torch.bool)
            self._write_queue(queue, {name: column[rows] for name, column in columns.items()}, step)

    def _write_queue(self, queue: int, columns: dict[str, torch.Tensor], step: int) -> None:
        """`columns`: buffer name -> rows for this queue, in write order."""
        count = columns["labels"].shape[0]
        if count == 0:
            return
        if count > self.queue_size:  # only the newest fit; FIFO drops the rest at once
            columns = {name: column[-self.queue_size :] for name, column in columns.items()}
        start = int(self.pointers[queue])
        offsets = (start + torch.arange(count, device=self.steps.device)) % self.queue_size
        slots = queue * self.queue_size + offsets[-columns["labels"].shape[0] :]  # (n,)
        for name, column in columns.items():
            buffer = getattr(self, name)
            buffer[slots] = column.detach().to(buffer.dtype)
        self.steps[slots] = step
        self.pointers[queue] = (start + count) % self.queue_size

    # ------------------------------------------------------------------------------------------- report
    def report(
        self, query_keys: torch.Tensor, step: int, fresh: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-step figures: enabled, size, mean age, bank negatives per query, masked duplicates; with
        fresh text (`fresh`: positions within the usable rows) the re-encoded count and how many of each
        query's bank negatives were fresh."""
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
        if self.stores_text:
            count = fresh.numel() if fresh is not None else 0
            fresh_per_query = ages.new_tensor(0.0)
            if count and query_keys.numel():
                same_fresh = query_keys.unsqueeze(1) == self.caption_keys[keep][fresh].unsqueeze(0)  # (M, n)
                fresh_per_query = (count - same_fresh.sum(1)).float().mean()
            result["memory_bank/fresh_text"] = ages.new_tensor(float(count))
            result["memory_bank/fresh_negatives_per_query"] = fresh_per_query
        return result
