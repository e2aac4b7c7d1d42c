"""Region features from the frames already encoded: RoIAlign per (frame, region), pooled over visible frames."""

from __future__ import annotations

import torch

from fgclip.model.roi_align import roi_align


def pool_region_features(
    dense: torch.Tensor,
    frame_index: torch.Tensor,
    region_boxes: torch.Tensor,
    region_box_mask: torch.Tensor,
    region_valid: torch.Tensor,
    pooling: str = "mean",
) -> torch.Tensor:
    """One feature per valid region, packed in `region_valid.nonzero()` order.

    dense (N, C, h, w): dense features of the N real frames; frame_index (B, T): row of each frame in
    `dense`, -1 for padded frames; region_boxes (B, T, R, 4) normalised x1,y1,x2,y2; region_box_mask
    (B, T, R); region_valid (B, R). Returns (M, C) in float32.
    """
    batch_size, _, num_slots = region_box_mask.shape
    grid_h, grid_w = dense.shape[-2:]
    visible = region_box_mask & (frame_index >= 0).unsqueeze(-1) & region_valid.unsqueeze(1)  # (B, T, R)
    b, t, r = visible.nonzero(as_tuple=True)  # (P,) each
    scale = region_boxes.new_tensor([grid_w, grid_h, grid_w, grid_h])
    rois = torch.cat(
        [frame_index[b, t].unsqueeze(1).to(region_boxes.dtype), region_boxes[b, t, r] * scale], 1
    )
    # aligned=True: pixel centres sit at integer grid coordinates, as FG-CLIP's region features assume.
    per_frame = roi_align(dense.float(), rois.float(), (1, 1), 1.0, -1, True).flatten(1)  # (P, C)

    slot = b * num_slots + r  # (P,)
    counts = torch.bincount(slot, minlength=batch_size * num_slots)  # (B*R,)
    valid_slots = region_valid.flatten().nonzero(as_tuple=True)[0]  # (M,)
    if bool((counts[valid_slots] == 0).any()):
        raise ValueError(
            "a region marked valid is visible on no real frame (batch contract: region_valid implies at least "
            "one True in region_box_mask on a real frame)"
        )
    pooled = per_frame.new_zeros(batch_size * num_slots, per_frame.shape[1])
    if pooling == "mean":
        pooled = pooled.index_add(0, slot, per_frame) / counts.clamp(min=1).unsqueeze(1)
    elif pooling == "max":
        index = slot.unsqueeze(1).expand_as(per_frame)
        pooled = pooled.scatter_reduce(0, index, per_frame, reduce="amax", include_self=False)
    else:
        raise ValueError(f"unknown region pooling {pooling!r}")
    return pooled[valid_slots]  # (M, C)
