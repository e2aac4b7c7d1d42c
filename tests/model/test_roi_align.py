"""fgclip.model.roi_align against a naive, loop-by-loop transcription of torchvision's RoIAlign CPU kernel.

The reference below (`roi_align_reference`) is deliberately independent of the implementation: plain Python
scalars, one box / bin / sample / corner at a time, channels as a numpy vector. With `real=float` it does the
coordinate arithmetic in double (torchvision's kernel with T=double); with `real=np.float32` every operation
rounds to float32 (T=float). benchmarks/roi_align_speed.py imports it from this file.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from fgclip.model.roi_align import roi_align

# ----------------------------------------------------------------------------------------------------------
# Naive reference
# ----------------------------------------------------------------------------------------------------------


def _reference_rows(boxes) -> list[list[float]]:
    """(batch_index, x1, y1, x2, y2) rows as Python floats, from either box format."""
    if isinstance(boxes, torch.Tensor):
        return boxes.tolist()
    return [[float(image), *row] for image, per_image in enumerate(boxes) for row in per_image.tolist()]


def _reference_sample(y, x, height, width, real):
    """[(row, col, weight)] bilinear taps of one sample; [] when the sample lies off the map."""
    if not (y >= -1.0 and y <= height and x >= -1.0 and x <= width):
        return []
    if y <= 0:
        y = real(0.0)
    if x <= 0:
        x = real(0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = real(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = real(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - real(y_low), x - real(x_low)
    hy, hx = real(1.0) - ly, real(1.0) - lx
    return [
        (y_low, x_low, hy * hx),
        (y_low, x_high, hy * lx),
        (y_high, x_low, ly * hx),
        (y_high, x_high, ly * lx),
    ]


def reference_taps(rows, height, width, output_size, spatial_scale, sampling_ratio, aligned, real=float):
    """One entry per (box, i, j) in output order: (batch_index, count, [(row, col, weight), ...])."""
    pooled_h, pooled_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    scale = real(spatial_scale)
    offset = real(0.5) if aligned else real(0.0)
    bins = []
    for row in rows:
        batch = int(row[0])
        x1, y1 = real(row[1]) * scale - offset, real(row[2]) * scale - offset
        x2, y2 = real(row[3]) * scale - offset, real(row[4]) * scale - offset
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, real(1.0)), max(roi_h, real(1.0))
        bin_h, bin_w = roi_h / real(pooled_h), roi_w / real(pooled_w)
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / real(pooled_h))
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / real(pooled_w))
        count = max(grid_h * grid_w, 1)
        for i in range(pooled_h):
            for j in range(pooled_w):
                taps = []
                for iy in range(grid_h):
                    y = y1 + real(i) * bin_h + real(iy + 0.5) * bin_h / real(grid_h)
                    for ix in range(grid_w):
                        x = x1 + real(j) * bin_w + real(ix + 0.5) * bin_w / real(grid_w)
                        taps += _reference_sample(y, x, height, width, real)
                bins.append((batch, count, taps))
    return bins


def roi_align_reference(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """Naive RoIAlign, float64 result. Coordinates in float32 arithmetic iff `input` is float32."""
    real = np.float32 if input.dtype == torch.float32 else float
    _, channels, height, width = input.shape
    pooled_h, pooled_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    rows = _reference_rows(boxes)
    bins = reference_taps(
        rows, height, width, (pooled_h, pooled_w), spatial_scale, sampling_ratio, aligned, real
    )
    values = input.detach().double().numpy()
    out = np.zeros((len(rows) * pooled_h * pooled_w, channels))
    for flat, (batch, count, taps) in enumerate(bins):
        acc = np.zeros(channels)
        for y, x, weight in taps:
            acc += float(weight) * values[batch, :, y, x]
        out[flat] = acc / count
    return torch.from_numpy(out).view(len(rows), pooled_h, pooled_w, channels).permute(0, 3, 1, 2)


def reference_input_grad(input, boxes, grad_output, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """d(sum(output * grad_output)) / d(input): every tap's weight / count, accumulated into the map."""
    num_images, channels, height, width = input.shape
    _, _, pooled_h, pooled_w = grad_output.shape
    bins = reference_taps(
        _reference_rows(boxes), height, width, (pooled_h, pooled_w), spatial_scale, sampling_ratio, aligned
    )
    upstream = grad_output.detach().double().permute(0, 2, 3, 1).reshape(-1, channels).numpy()
    grad = np.zeros((num_images, channels, height, width))
    for flat, (batch, count, taps) in enumerate(bins):
        for y, x, weight in taps:
            grad[batch, :, y, x] += weight / count * upstream[flat]
    return torch.from_numpy(grad)


# ----------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------

N, C, H, W = 3, 4, 7, 9


def _random_boxes(gen: torch.Generator, count: int, low: float, high: float, size: tuple[float, float]):
    """(count, 4) boxes x1,y1,x2,y2 in map units: x1,y1 ~ U(low, high), width/height ~ U(size)."""
    corner = torch.rand(count, 2, generator=gen, dtype=torch.float64) * (high - low) + low
    extent = torch.rand(count, 2, generator=gen, dtype=torch.float64) * (size[1] - size[0]) + size[0]
    return torch.cat([corner, corner + extent], dim=1)


# Hand-placed boxes (map units): last row/column, whole map, exactly -1 / H sample positions, degenerate.
EDGE_BOXES = [
    [W - 1, H - 1, W, H],
    [W - 0.5, H - 0.5, W + 0.5, H + 0.5],
    [0, 0, W, H],
    [-0.5, -0.5, W - 0.5, H - 0.5],
    [-1.5, -1.5, -0.5, -0.5],
    [W - 2.3, 0.2, W - 2.2, H + 0.7],
    [3.0, 2.0, 3.0, 2.0],
    [5.0, 4.0, 2.0, 1.0],
]


def _case_boxes(seed: int) -> torch.Tensor:
    """(K, 4) float64 boxes in map units covering every category named in the test ids."""
    gen = torch.Generator().manual_seed(seed)
    inside = _random_boxes(gen, 6, 0.0, 3.0, (0.5, 4.0))
    partly_outside = _random_boxes(gen, 4, -3.0, W - 1.0, (3.0, 8.0))
    fully_outside = torch.cat(
        [_random_boxes(gen, 2, W + 1.2, W + 3.0, (0.5, 2.0)), _random_boxes(gen, 2, -6.0, -4.0, (0.5, 2.0))]
    )
    tiny = _random_boxes(gen, 4, 0.0, H - 1.0, (0.05, 0.9))
    edges = torch.tensor(EDGE_BOXES, dtype=torch.float64)
    return torch.cat([inside, partly_outside, fully_outside, tiny, edges])


def _case(seed: int, spatial_scale: float, dtype: torch.dtype = torch.float64):
    """Map (N, C, H, W), boxes as a list of N (Ki, 4) tensors and as the equivalent (K, 5) tensor."""
    gen = torch.Generator().manual_seed(seed)
    feature = torch.randn(N, C, H, W, generator=gen, dtype=torch.float64).to(dtype)
    boxes = (_case_boxes(seed) / spatial_scale).to(dtype)  # image units
    image = torch.randint(0, N, (boxes.shape[0],), generator=gen)
    per_image = [boxes[image == i] for i in range(N)]
    rois = torch.cat(
        [torch.cat([torch.full((len(b), 1), float(i), dtype=dtype), b], 1) for i, b in enumerate(per_image)]
    )
    return feature, per_image, rois


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


# ----------------------------------------------------------------------------------------------------------
# Forward against the reference
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_size", [(1, 1), (2, 2), (3, 2)])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.25])
def test_matches_reference_float64(spatial_scale, aligned, sampling_ratio, output_size):
    feature, per_image, rois = _case(7, spatial_scale)
    args = (output_size, spatial_scale, sampling_ratio, aligned)
    expected = roi_align_reference(feature, rois, *args)
    case = f"scale={spatial_scale} aligned={aligned} sr={sampling_ratio} out={output_size}"
    for fmt, boxes in (("tensor[K,5]", rois), ("list[Ki,4]", per_image)):
        got = roi_align(feature, boxes, *args)
        assert got.shape == (rois.shape[0], C, *output_size) and got.dtype == torch.float64, case
        diff = _max_diff(got, expected)
        assert diff < 1e-9, f"{case} boxes={fmt}: max abs diff {diff:.3g}"


@pytest.mark.parametrize("sampling_ratio", [-1, 2])
@pytest.mark.parametrize("aligned", [False, True])
def test_matches_reference_float32(aligned, sampling_ratio):
    # The reference runs its coordinate arithmetic in np.float32, like torchvision's kernel with T=float.
    feature, per_image, rois = _case(11, 0.25, torch.float32)
    expected = roi_align_reference(feature, rois, (3, 2), 0.25, sampling_ratio, aligned)
    for fmt, boxes in (("tensor[K,5]", rois), ("list[Ki,4]", per_image)):
        got = roi_align(feature, boxes, (3, 2), 0.25, sampling_ratio, aligned)
        assert got.dtype == torch.float32
        diff = _max_diff(got, expected)
        assert diff < 1e-5, (
            f"float32 aligned={aligned} sr={sampling_ratio} boxes={fmt}: max abs diff {diff:.3g}"
        )


@pytest.mark.parametrize("aligned", [False, True])
def test_fully_outside_boxes_are_zero(aligned):
    feature = torch.randn(1, 2, H, W, dtype=torch.float64)
    boxes = torch.tensor(
        [[0, W + 1.5, 0, W + 3, 2], [0, -6, -5, -4, -3], [0, 1, H + 1.2, 3, H + 2]], dtype=torch.float64
    )
    out = roi_align(feature, boxes, (2, 2), sampling_ratio=-1, aligned=aligned)
    assert out.abs().max().item() == 0.0


def test_samples_exactly_on_the_range_limits_count():
    # One sample per bin (sampling_ratio=1, 1x1 output, unaligned 1-cell box): sample at the box centre.
    # Centres exactly at y = H or y = -1 are inside (clamped to the edge row); a hair further out reads 0.
    feature = torch.ones(1, 1, H, W, dtype=torch.float64)
    centres = [
        (4.0, float(H)),
        (4.0, -1.0),
        (float(W), 3.0),
        (-1.0, 3.0),
        (4.0, H + 1e-6),
        (-1.0 - 1e-6, 3.0),
    ]
    boxes = torch.tensor([[0, x - 0.5, y - 0.5, x + 0.5, y + 0.5] for x, y in centres], dtype=torch.float64)
    out = roi_align(feature, boxes, 1, sampling_ratio=1, aligned=False).flatten()
    assert out.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_inverted_aligned_box_is_zero_and_unaligned_is_one_cell():
    feature = torch.randn(1, 2, H, W, dtype=torch.float64)
    boxes = torch.tensor([[0, 5.0, 4.0, 2.0, 1.0]], dtype=torch.float64)
    # aligned=True keeps the negative size: ceil(negative) grid -> no samples -> 0.
    assert roi_align(feature, boxes, 2, aligned=True).abs().max().item() == 0.0
    # aligned=False clamps the size to 1 cell: a 1x1 box at (5, 4) with 1x1 output reads its centre.
    centre = roi_align(feature, boxes, 1, aligned=False).flatten()
    expected = 0.25 * (feature[0, :, 4, 5] + feature[0, :, 4, 6] + feature[0, :, 5, 5] + feature[0, :, 5, 6])
    assert _max_diff(centre, expected) < 1e-12


def test_empty_boxes():
    feature = torch.randn(2, 3, 5, 5, requires_grad=True)
    for boxes in (torch.zeros(0, 5), [torch.zeros(0, 4), torch.zeros(0, 4)], []):
        out = roi_align(feature, boxes, (2, 3), aligned=True)
        assert out.shape == (0, 3, 2, 3)
        out.sum().backward()
        assert feature.grad is not None and feature.grad.abs().max().item() == 0.0


def test_int_output_size_and_contiguous_output():
    feature, _, rois = _case(3, 1.0)
    square = roi_align(feature, rois, 2, aligned=True)
    assert square.is_contiguous()
    assert torch.equal(square, roi_align(feature, rois, (2, 2), aligned=True))


def test_bad_boxes_shape_raises():
    feature = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError):
        roi_align(feature, torch.zeros(3, 4), 1)
    with pytest.raises(ValueError):
        roi_align(feature, [torch.zeros(3, 5)], 1)


# ----------------------------------------------------------------------------------------------------------
# Known answers
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_scale", [1.0, 1 / 16])
def test_whole_map_box_gives_the_mean(spatial_scale):
    # With aligned=True the box [0, 0, W, H] becomes [-0.5, W - 0.5] x [-0.5, H - 0.5]; with a 1x1 output and
    # adaptive sampling the grid is W x H samples at x = -0.5 + (ix + 0.5) * W / W = ix, i.e. exactly on the
    # cell centres. Each sample then reads one cell with weight 1 (ly = lx = 0; the last row/column is the
    # clamped edge case), so the bin is the plain mean of the map. For a linear map a*x + b*y + c that mean is
    # a*(W-1)/2 + b*(H-1)/2 + c; for a constant map it is the constant.
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
    )
    linear = torch.stack([2.0 * xs - 3.0 * ys + 0.5, -xs + 0.25 * ys - 4.0])  # (2, H, W)
    constant = torch.full((2, H, W), 3.25, dtype=torch.float64)
    feature = torch.stack([linear, constant])  # (2, 2, H, W)
    box = [0.0, 0.0, W / spatial_scale, H / spatial_scale]
    rois = torch.tensor([[0.0, *box], [1.0, *box]], dtype=torch.float64)
    out = roi_align(feature, rois, 1, spatial_scale, -1, True).flatten(1)  # (2, 2)
    linear_mean = [2.0 * (W - 1) / 2 - 3.0 * (H - 1) / 2 + 0.5, -(W - 1) / 2 + 0.25 * (H - 1) / 2 - 4.0]
    assert _max_diff(out[0], torch.tensor(linear_mean)) < 1e-12
    assert _max_diff(out[0], linear.mean((1, 2))) < 1e-12
    assert _max_diff(out[1], torch.full((2,), 3.25)) < 1e-12


# ----------------------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------------------


def test_gradcheck_float64():
    # Generic fractional corners, so no sample coordinate is an integer (output is linear in the map anyway).
    gen = torch.Generator().manual_seed(0)
    feature = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor(
        [[0, 0.3, 0.7, 3.2, 2.9], [1, 1.1, 0.4, 4.6, 3.3], [1, -0.8, 2.1, 2.35, 5.6]], dtype=torch.float64
    )
    for aligned, sampling_ratio in ((False, 2), (True, -1)):
        pooled = functools.partial(
            roi_align, boxes=rois, output_size=(2, 2), sampling_ratio=sampling_ratio, aligned=aligned
        )
        assert torch.autograd.gradcheck(pooled, (feature,))


@pytest.mark.parametrize(
    ("aligned", "sampling_ratio", "spatial_scale"), [(False, -1, 1.0), (True, -1, 0.25), (True, 2, 1.0)]
)
def test_input_grad_equals_reference_bilinear_weights(aligned, sampling_ratio, spatial_scale):
    feature, per_image, rois = _case(5, spatial_scale)
    feature.requires_grad_(True)
    upstream = torch.randn(
        rois.shape[0], C, 3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    out = roi_align(feature, per_image, (3, 2), spatial_scale, sampling_ratio, aligned)
    (grad,) = torch.autograd.grad((out * upstream).sum(), feature)
    expected = reference_input_grad(feature, rois, upstream, spatial_scale, sampling_ratio, aligned)
    diff = _max_diff(grad, expected)
    assert diff < 1e-9, (
        f"aligned={aligned} sr={sampling_ratio} scale={spatial_scale}: max abs grad diff {diff:.3g}"
    )


def test_boxes_get_no_gradient():
    feature = torch.randn(1, 2, 5, 5, requires_grad=True)
    rois = torch.tensor([[0, 0.5, 0.5, 3.5, 3.5]], requires_grad=True)
    roi_align(feature, rois, 2).sum().backward()
    assert rois.grad is None and feature.grad is not None


# ----------------------------------------------------------------------------------------------------------
# dtypes and devices
# ----------------------------------------------------------------------------------------------------------


def test_bfloat16_close_to_float32():
    feature, _, rois = _case(13, 1.0, torch.float32)
    reference = roi_align(feature, rois, (2, 2), aligned=True)
    half = feature.bfloat16().requires_grad_(True)
    out = roi_align(half, rois, (2, 2), aligned=True)
    assert out.dtype == torch.bfloat16
    # bf16 keeps 8 mantissa bits: the map itself is rounded by ~0.4% relative before pooling.
    diff = _max_diff(out, reference)
    assert diff < 3e-2, f"bf16 vs fp32: max abs diff {diff:.3g}"
    out.float().sum().backward()
    assert half.grad is not None and half.grad.dtype == torch.bfloat16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    feature, per_image, rois = _case(17, 0.25, torch.float32)
    cpu = roi_align(feature, rois, (3, 2), 0.25, -1, True)
    cuda = roi_align(feature.cuda(), [b.cuda() for b in per_image], (3, 2), 0.25, -1, True)
    assert _max_diff(cuda.cpu(), cpu) < 1e-5
