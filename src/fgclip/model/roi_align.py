"""RoIAlign in pure PyTorch, with the exact semantics of ``torchvision.ops.roi_align``.

Why this exists: torchvision's compiled ops (``torch.ops.torchvision.roi_align``) do not load against the
CPU torch build this project pins, and the region features of the released FG-CLIP checkpoints are only
reproduced if the pooling matches torchvision's kernel sample for sample (``aligned=True``, adaptive
sampling grid, out-of-map samples reading zero, clamping at the last row/column).

Semantics are those of torchvision's CPU kernel (``torchvision/csrc/ops/cpu/roi_align_kernel.cpp`` and
``roi_align_common.h``): box corners times ``spatial_scale`` (minus 0.5 if ``aligned``); unaligned boxes
are at least 1x1; each of the ``ph x pw`` bins averages a ``grid_h x grid_w`` grid of bilinear samples,
``grid = sampling_ratio`` if it is > 0 else ``ceil(roi_size / pooled_size)`` per box; a sample with
``y < -1``, ``y > H``, ``x < -1`` or ``x > W`` (or NaN) reads 0; the sum is divided by
``max(grid_h * grid_w, 1)``. The operation order of the coordinate arithmetic follows the kernel, so its
branch decisions (``ceil``, the range test, integer truncation) are the kernel's.

Design: each (box, bin, sample) becomes four bilinear taps, i.e. (flat index into the ``N*H*W`` map,
weight). Bilinear weights factor into a y part and an x part, so the taps are built per axis and combined
by broadcasting. Boxes have different grid sizes, so every box's samples are padded to the largest grid of
the call and the padding gets weight 0. A single ``F.embedding_bag(mode="sum", per_sample_weights=...)``
over the map seen as an ``(N*H*W, C)`` table then sums each bin's taps without materialising a
``(taps, C)`` tensor; its backward scatters the same weights into the map, so the gradient w.r.t.
``input`` is exactly the accumulated bilinear weights. Boxes get no gradient (as in torchvision).

Precision: float32 and float64 inputs are computed in their own dtype, boxes included (torchvision requires
``rois.dtype == input.dtype`` and does the coordinate arithmetic in it). float16 and bfloat16 inputs are
computed in float32 and the result is cast back to the input dtype.

Cost: with adaptive sampling (``sampling_ratio <= 0``) the largest grid is read back to the host (one
device sync on CUDA); memory is ``K * ph * pw * max_grid_h * max_grid_w * 4`` indices and weights, so a
single very large box inflates the whole call. The map is read as an ``(N*H*W, C)`` table, which is a free
view for a channels-last map (e.g. ViT patch tokens ``(N, P, C)`` transposed and reshaped to ``(N, C, h, w)``)
and one transpose copy for an NCHW-contiguous one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["roi_align"]


def roi_align(
    input: torch.Tensor,
    boxes: torch.Tensor | list[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """RoIAlign with average pooling, as ``torchvision.ops.roi_align``.

    input (N, C, H, W) floating point; boxes either (K, 5) rows ``(batch_index, x1, y1, x2, y2)`` or a
    list of N tensors (Ki, 4) ``(x1, y1, x2, y2)`` whose batch index is their position; output_size an
    int or (ph, pw). Returns (K, C, ph, pw) in the input dtype, differentiable w.r.t. ``input``.
    """
    if input.dim() != 4 or not input.is_floating_point():
        raise ValueError(
            f"input must be a floating point (N, C, H, W) tensor, got {input.dtype} {tuple(input.shape)}"
        )
    pooled_h, pooled_w = _pair(output_size)
    dtype = _compute_dtype(input.dtype)
    rois = _as_rois(boxes, dtype, input.device)  # (K, 5)
    num_images, channels, height, width = input.shape
    y_idx, y_w, grid_h = _axis_taps(
        rois[:, 2], rois[:, 4], pooled_h, height, spatial_scale, sampling_ratio, aligned
    )
    x_idx, x_w, grid_w = _axis_taps(
        rois[:, 1], rois[:, 3], pooled_w, width, spatial_scale, sampling_ratio, aligned
    )

    # Four taps per sample: outer product of the y taps (K, ph, Gh, 2) and the x taps (K, pw, Gw, 2).
    batch = rois[:, 0].long().view(-1, 1, 1, 1, 1, 1, 1)  # (K, 1, 1, 1, 1, 1, 1), truncated as (int)
    rows = y_idx[:, :, None, :, None, :, None]  # (K, ph, 1, Gh, 1, 2, 1)
    cols = x_idx[:, None, :, None, :, None, :]  # (K, 1, pw, 1, Gw, 1, 2)
    tap_index = (batch * height + rows) * width + cols  # (K, ph, pw, Gh, Gw, 2, 2)
    row_w = y_w[:, :, None, :, None, :, None]  # (K, ph, 1, Gh, 1, 2, 1)
    col_w = x_w[:, None, :, None, :, None, :]  # (K, 1, pw, 1, Gw, 1, 2)
    tap_weight = row_w * col_w  # (K, ph, pw, Gh, Gw, 2, 2), hy*hx, hy*lx, ly*hx, ly*lx as in the kernel

    num_bins = rois.shape[0] * pooled_h * pooled_w
    taps_per_bin = y_idx.shape[2] * x_idx.shape[2] * 4  # Gh * Gw * 4, explicit so K = 0 reshapes
    table = input.to(dtype).permute(0, 2, 3, 1).reshape(num_images * height * width, channels)  # (N*H*W, C)
    summed = F.embedding_bag(
        tap_index.reshape(num_bins, taps_per_bin),  # (K*ph*pw, Gh*Gw*4)
        table,
        per_sample_weights=tap_weight.reshape(num_bins, taps_per_bin),  # (K*ph*pw, Gh*Gw*4)
        mode="sum",
    )  # (K*ph*pw, C)
    count = (grid_h * grid_w).clamp(min=1).to(dtype)  # (K,)
    pooled = summed.view(-1, pooled_h, pooled_w, channels) / count.view(-1, 1, 1, 1)  # (K, ph, pw, C)
    return pooled.permute(0, 3, 1, 2).contiguous().to(input.dtype)  # (K, C, ph, pw)


def _axis_taps(
    lo: torch.Tensor,
    hi: torch.Tensor,
    pooled: int,
    size: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps along one axis: index (K, P, G, 2), weight (K, P, G, 2), per-box grid size (K,).

    lo, hi (K,) are the box's raw corner coordinates on this axis, P the pooled size, ``size`` the map's
    extent on this axis and G the padded number of samples per bin.
    """
    offset = 0.5 if aligned else 0.0
    start = lo * spatial_scale - offset  # (K,)
    extent = (hi * spatial_scale - offset) - start  # (K,)
    if not aligned:
        extent = extent.clamp(min=1.0)  # malformed boxes become 1 cell wide
    bin_size = extent / pooled  # (K,)
    grid = _grid_size(bin_size, sampling_ratio)  # (K,)
    num_samples = sampling_ratio if sampling_ratio > 0 else _max_or_one(grid)

    bins = torch.arange(pooled, dtype=lo.dtype, device=lo.device)  # (P,)
    sub = torch.arange(num_samples, dtype=lo.dtype, device=lo.device) + 0.5  # (G,)
    step = bin_size.view(-1, 1, 1)  # (K, 1, 1)
    bin_start = start.view(-1, 1, 1) + bins.view(1, -1, 1) * step  # (K, P, 1)
    coord = bin_start + (sub.view(1, 1, -1) * step) / grid.to(lo.dtype).view(-1, 1, 1)  # (K, P, G)

    used = torch.arange(num_samples, device=lo.device) < grid.view(-1, 1, 1)  # (K, 1, G)
    valid = used & (coord >= -1.0) & (coord <= size)  # (K, P, G); False for NaN
    return (*_bilinear_1d(coord, valid, size), grid)


def _bilinear_1d(coord: torch.Tensor, valid: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's clamped 1-D interpolation: (low, high) indices and (1 - frac, frac) weights, each (..., 2).

    Invalid samples get weight 0 and index 0, so NaN or far-away coordinates never reach the cast.
    """
    coord = torch.where(valid, coord, 0.0).clamp(min=0.0)  # (K, P, G)
    low = coord.long()  # (K, P, G), truncation == floor since coord >= 0
    at_edge = low >= size - 1  # (K, P, G)
    low = low.clamp(max=size - 1)  # (K, P, G)
    high = torch.where(at_edge, low, low + 1)  # (K, P, G)
    coord = torch.where(at_edge, low.to(coord.dtype), coord)  # (K, P, G)
    frac = coord - low  # (K, P, G)
    weight = torch.stack([1.0 - frac, frac], dim=-1) * valid.unsqueeze(-1)  # (K, P, G, 2)
    return torch.stack([low, high], dim=-1), weight


def _grid_size(bin_size: torch.Tensor, sampling_ratio: int) -> torch.Tensor:
    """Samples per bin along one axis, (K,) int64: ``sampling_ratio`` or ceil(roi_size / pooled_size)."""
    if sampling_ratio > 0:
        return torch.full(bin_size.shape, sampling_ratio, dtype=torch.long, device=bin_size.device)
    grid = torch.ceil(bin_size)  # (K,); may be <= 0 for inverted aligned boxes: no samples
    return torch.where(torch.isfinite(grid), grid, 0.0).long()  # (K,); non-finite boxes sample nothing


def _max_or_one(grid: torch.Tensor) -> int:
    """Padded sample count: the largest grid (host sync), at least 1 so the tap tensors are never empty."""
    return max(int(grid.max().item()), 1) if grid.numel() else 1


def _as_rois(
    boxes: torch.Tensor | list[torch.Tensor], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """(K, 5) rows ``(batch_index, x1, y1, x2, y2)`` in ``dtype`` on ``device``, detached."""
    if isinstance(boxes, torch.Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"boxes tensor must be (K, 5), got {tuple(boxes.shape)}")
        return boxes.detach().to(device=device, dtype=dtype)
    if not isinstance(boxes, (list, tuple)):
        raise ValueError(f"boxes must be a (K, 5) tensor or a list of (Ki, 4) tensors, got {type(boxes)}")
    rows = [torch.zeros(0, 5, dtype=dtype, device=device)]
    for image, per_image in enumerate(boxes):
        if per_image.dim() != 2 or per_image.shape[1] != 4:
            raise ValueError(f"boxes[{image}] must be (Ki, 4), got {tuple(per_image.shape)}")
        per_image = per_image.detach().to(device=device, dtype=dtype)  # (Ki, 4)
        index = torch.full_like(per_image[:, :1], image)  # (Ki, 1)
        rows.append(torch.cat([index, per_image], dim=1))  # (Ki, 5)
    return torch.cat(rows, dim=0)  # (K, 5)


def _pair(output_size: int | tuple[int, int]) -> tuple[int, int]:
    pooled_h, pooled_w = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if pooled_h <= 0 or pooled_w <= 0:
        raise ValueError(f"output_size must be positive, got {output_size}")
    return int(pooled_h), int(pooled_w)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32/float64 are kept (bit-faithful coordinates); half precisions compute in float32."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32
