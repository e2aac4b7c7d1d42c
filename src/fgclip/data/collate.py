"""Pad a list of dataset items into one `Batch` (DESIGN §3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fgclip.data.batch import Batch


class ClipCollator:
    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, items: Sequence[dict]) -> Batch:
        num_frames = max(item["pixel_values"].shape[0] for item in items)
        num_slots = max(1, max(len(item["region_caption_ids"]) for item in items))
        num_negatives = max((len(n) for item in items for n in item["hard_negative_ids"]), default=0)
        pixel_values, frame_mask = _pad_frames([item["pixel_values"] for item in items], num_frames)
        batch_size = len(items)
        caption_ids, caption_mask = self._pad_tokens([item["caption_ids"] for item in items], (batch_size,))
        region_ids, region_mask = self._pad_tokens(
            [seq for item in items for seq in _pad_list(item["region_caption_ids"], num_slots, [])],
            (batch_size, num_slots),
        )
        negative_ids, negative_mask = self._pad_tokens(
            [
                seq
                for item in items
                for negatives in _pad_list(item["hard_negative_ids"], num_slots, [])
                for seq in _pad_list(negatives, num_negatives, [])
            ],
            (batch_size, num_slots, num_negatives),
        )
        boxes, box_mask = _pad_boxes(items, num_frames, num_slots)
        region_valid = torch.tensor(
            [[r < len(item["region_caption_ids"]) for r in range(num_slots)] for item in items]
        )  # (B, R)
        return Batch(
            pixel_values=pixel_values,
            frame_mask=frame_mask,
            caption_ids=caption_ids,
            caption_mask=caption_mask,
            caption_keys=torch.tensor([item["caption_key"] for item in items]),
            region_boxes=boxes,
            region_box_mask=box_mask & frame_mask.unsqueeze(-1),
            region_valid=region_valid,
            region_caption_ids=region_ids,
            region_caption_mask=region_mask,
            region_labels=_long([_pad_list(item["region_labels"], num_slots, 0) for item in items]),
            region_caption_keys=_long(
                [_pad_list(item["region_caption_keys"], num_slots, 0) for item in items]
            ),
            hard_negative_ids=negative_ids,
            hard_negative_mask=negative_mask,
            clip_labels=_long([item["clip_label"] for item in items]),
            clip_classes=_long([item["clip_class"] for item in items]),
            dropped_regions=_long([item["dropped_regions"] for item in items]),
            sample_ids=[item["sample_id"] for item in items],
        )

    def _pad_tokens(
        self, sequences: list[list[int]], shape: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token-id lists (row-major over `shape`) -> (ids, mask) of shape (*shape, L), L >= 1."""
        length = max([len(seq) for seq in sequences], default=0) or 1
        ids = torch.full((len(sequences), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return ids.view(*shape, length), mask.view(*shape, length)


def _pad_frames(clips: list[torch.Tensor], num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    shape = clips[0].shape[1:]
    pixels = torch.zeros(len(clips), num_frames, *shape)
    mask = torch.zeros(len(clips), num_frames, dtype=torch.bool)
    for b, frames in enumerate(clips):
        pixels[b, : frames.shape[0]] = frames
        mask[b, : frames.shape[0]] = True
    return pixels, mask


def _pad_boxes(items, num_frames: int, num_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    boxes = torch.zeros(len(items), num_frames, num_slots, 4)
    mask = torch.zeros(len(items), num_frames, num_slots, dtype=torch.bool)
    for b, item in enumerate(items):
        t, r = item["region_box_mask"].shape
        boxes[b, :t, :r] = item["region_boxes"]
        mask[b, :t, :r] = item["region_box_mask"]
    return boxes, mask


def _pad_list(values: list, length: int, fill) -> list:
    return list(values) + [fill] * (length - len(values))


def _long(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)
