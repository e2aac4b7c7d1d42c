"""The batch contract (DESIGN §3): the only thing that crosses from data to model.

B clips, T frames, R region slots, K hard-negative slots, L tokens. Boxes are x1,y1,x2,y2 normalised to
[0,1] of the frame as fed to the model. A region slot is valid only if it is visible on at least one real
frame; a normal clip's region is the full frame over its real frames. Nothing is ever a zero image.
"""

from __future__ import annotations

from typing import TypedDict

import torch


class Batch(TypedDict):
    pixel_values: torch.Tensor  # (B, T, 3, H, W) float: frames (T=1 for images)
    frame_mask: torch.Tensor  # (B, T) bool: real (not padded) frames
    caption_ids: torch.Tensor  # (B, L) long: global caption tokens
    caption_mask: torch.Tensor  # (B, L) long
    caption_keys: torch.Tensor  # (B,) long: stable hash of the normalised global caption
    region_boxes: torch.Tensor  # (B, T, R, 4) float: box of region r on frame t
    region_box_mask: torch.Tensor  # (B, T, R) bool: region r is visible on frame t
    region_valid: torch.Tensor  # (B, R) bool: slot r holds a real region
    region_caption_ids: torch.Tensor  # (B, R, L) long
    region_caption_mask: torch.Tensor  # (B, R, L) long
    region_labels: torch.Tensor  # (B, R) long: 0 normal, 1 abnormal
    region_caption_keys: torch.Tensor  # (B, R) long: stable caption hash (false-negative masking)
    hard_negative_ids: torch.Tensor  # (B, R, K, L) long
    hard_negative_mask: torch.Tensor  # (B, R, K, L) long: all zero where a negative is absent
    clip_labels: torch.Tensor  # (B,) long: 0 normal, 1 abnormal
    clip_classes: torch.Tensor  # (B,) long: class index in the label prompt set (0 normal, c >= 1 anomaly
    #                              class c, -1 abnormal of unknown class; fgclip.data.classes)
    dropped_regions: torch.Tensor  # (B,) long: annotated regions not in the batch (over max_regions, or not
    #                                 visible on any sampled frame) — reported every step, never silent
    sample_ids: list[str]  # entry identity, for error messages and dumps


class BatchContractError(ValueError):
    pass


_DTYPES = {
    "frame_mask": torch.bool,
    "region_box_mask": torch.bool,
    "region_valid": torch.bool,
    "caption_ids": torch.long,
    "region_caption_ids": torch.long,
    "hard_negative_ids": torch.long,
    "region_labels": torch.long,
    "region_caption_keys": torch.long,
    "caption_keys": torch.long,
    "clip_labels": torch.long,
    "clip_classes": torch.long,
    "dropped_regions": torch.long,
}


def validate_batch(batch: Batch) -> None:
    """Check shapes, dtypes and invariants; raise `BatchContractError` naming the key and sample."""
    missing = set(Batch.__annotations__) - set(batch)
    if missing:
        raise BatchContractError(f"batch lacks keys {sorted(missing)}")
    B, T = batch["frame_mask"].shape
    R = batch["region_valid"].shape[1]
    L = batch["caption_ids"].shape[1]
    expected = {
        "pixel_values": (B, T, 3),
        "caption_ids": (B, L),
        "caption_mask": (B, L),
        "caption_keys": (B,),
        "region_boxes": (B, T, R, 4),
        "region_box_mask": (B, T, R),
        "region_valid": (B, R),
        "region_caption_ids": (B, R),
        "region_caption_mask": (B, R),
        "region_labels": (B, R),
        "region_caption_keys": (B, R),
        "hard_negative_ids": (B, R),
        "hard_negative_mask": (B, R),
        "clip_labels": (B,),
        "clip_classes": (B,),
        "dropped_regions": (B,),
    }
    for key, prefix in expected.items():
        shape = tuple(batch[key].shape[: len(prefix)])
        if shape != prefix:
            raise BatchContractError(
                f"batch[{key!r}] has shape {tuple(batch[key].shape)}, expected {prefix}+..."
            )
    for key, dtype in _DTYPES.items():
        if batch[key].dtype != dtype:
            raise BatchContractError(f"batch[{key!r}] has dtype {batch[key].dtype}, expected {dtype}")
    if len(batch["sample_ids"]) != B:
        raise BatchContractError(f"{len(batch['sample_ids'])} sample_ids for {B} clips")
    _check_regions_visible(batch)
    _check_classes(batch)


def _check_regions_visible(batch: Batch) -> None:
    visible = (batch["region_box_mask"] & batch["frame_mask"].unsqueeze(-1)).any(dim=1)  # (B, R)
    orphan = batch["region_valid"] & ~visible
    if orphan.any():
        b, r = orphan.nonzero()[0].tolist()
        raise BatchContractError(
            f"sample {batch['sample_ids'][b]!r}: region slot {r} is marked valid but visible on no real frame"
        )
    boxes = batch["region_boxes"][batch["region_box_mask"]]
    if boxes.numel() and (
        (boxes < 0).any()
        or (boxes > 1).any()
        or (boxes[:, 2] < boxes[:, 0]).any()
        or (boxes[:, 3] < boxes[:, 1]).any()
    ):
        raise BatchContractError(
            "visible region boxes must satisfy 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1"
        )


def _check_classes(batch: Batch) -> None:
    classes, labels = batch["clip_classes"], batch["clip_labels"]
    wrong = (labels == 0) & (classes != 0) | (labels == 1) & (classes == 0) | (classes < -1)
    if wrong.any():
        b = int(wrong.nonzero()[0])
        raise BatchContractError(
            f"sample {batch['sample_ids'][b]!r}: clip_classes {int(classes[b])} contradicts clip_labels "
            f"{int(labels[b])} (0 only for normal clips; abnormal: a class >= 1 or -1)"
        )
