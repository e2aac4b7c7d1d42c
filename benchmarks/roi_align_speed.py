"""Speed of fgclip.model.roi_align (vectorised) vs the naive loop reference of tests/model/test_roi_align.py.

Workload: region features of 64 frames of a ViT-B/16 (feature map [64, 768, 14, 14]), 256 boxes, 1x1
output, aligned=True, adaptive sampling (sampling_ratio=-1), float32 on CPU.

The naive reference walks boxes / bins / samples in Python, so it is timed on a subset of the boxes and
scaled linearly per box to the full workload (it is linear in the number of boxes); the output says so.

    python benchmarks/roi_align_speed.py [--boxes 256] [--naive-boxes 16] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import torch

from fgclip.model.roi_align import roi_align

TEST_FILE = Path(__file__).resolve().parents[1] / "tests" / "model" / "test_roi_align.py"


def load_reference():
    """`roi_align_reference` from the test file (kept there so the tests own the independent reference)."""
    spec = importlib.util.spec_from_file_location("_roi_align_test_reference", TEST_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.roi_align_reference


def make_workload(frames: int, channels: int, grid: int, num_boxes: int, seed: int):
    """Feature map (frames, C, grid, grid) and (K, 5) rois in map units, like fgclip.model.regions builds.

    The map is laid out as FGClipModel.encode_frames leaves it: patch tokens (N, P, C) transposed and
    reshaped to (N, C, h, w), i.e. channels-last strides, which roi_align reads without a copy.
    """
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(frames, grid * grid, channels, generator=gen)  # (N, P, C)
    feature = tokens.transpose(1, 2).reshape(
        frames, channels, grid, grid
    )  # (N, C, h, w), channels-last strides
    corner = torch.rand(num_boxes, 2, generator=gen) * (grid - 1)  # (K, 2) x1, y1
    size = torch.rand(num_boxes, 2, generator=gen) * (grid - corner) + 0.5  # (K, 2), may cross the edge
    frame = torch.randint(0, frames, (num_boxes, 1), generator=gen).float()  # (K, 1)
    rois = torch.cat([frame, corner, corner + size], dim=1)  # (K, 5)
    return feature, rois


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--channels", type=int, default=768)
    parser.add_argument("--grid", type=int, default=14)
    parser.add_argument("--boxes", type=int, default=256)
    parser.add_argument("--naive-boxes", type=int, default=16, help="boxes the naive loop is timed on")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    reference = load_reference()
    feature, rois = make_workload(args.frames, args.channels, args.grid, args.boxes, args.seed)
    subset = rois[: args.naive_boxes]
    pool = dict(output_size=(1, 1), spatial_scale=1.0, sampling_ratio=-1, aligned=True)

    contiguous = feature.contiguous()  # (N, C, h, w), NCHW strides: roi_align transposes it once per call
    with torch.no_grad():
        roi_align(feature, rois, **pool)  # warm-up
        fast_fwd = median_seconds(lambda: roi_align(feature, rois, **pool), args.repeats)
        fast_fwd_nchw = median_seconds(lambda: roi_align(contiguous, rois, **pool), args.repeats)
    leaf = feature.detach().requires_grad_(True)

    def forward_backward():
        leaf.grad = None
        roi_align(leaf, rois, **pool).sum().backward()

    forward_backward()  # warm-up
    fast_fwd_bwd = median_seconds(forward_backward, args.repeats)
    naive_repeats = max(1, min(args.repeats, 3))
    naive_subset = median_seconds(lambda: reference(feature, subset, **pool), naive_repeats)
    naive_full = naive_subset / len(subset) * args.boxes  # linear in the number of boxes

    diff = (
        (roi_align(feature, subset, **pool).double() - reference(feature, subset, **pool)).abs().max().item()
    )

    print(
        f"roi_align: feature {list(feature.shape)} float32, {args.boxes} boxes, output 1x1, aligned=True, "
        f"sampling_ratio=-1, {torch.get_num_threads()} torch threads, median of {args.repeats} repeats"
    )
    print(
        f"{'implementation':<26}{'boxes timed':>12}{'ms (timed)':>13}{'ms / box':>11}{f'ms @ {args.boxes}':>12}"
    )
    rows = [
        ("vectorised forward", args.boxes, fast_fwd),
        ("vectorised fwd, NCHW map", args.boxes, fast_fwd_nchw),
        ("vectorised fwd+bwd", args.boxes, fast_fwd_bwd),
        ("naive loop forward", len(subset), naive_subset),
    ]
    for name, timed, seconds in rows:
        per_box = seconds / timed * 1e3
        print(f"{name:<26}{timed:>12}{seconds * 1e3:>13.2f}{per_box:>11.3f}{per_box * args.boxes:>12.1f}")
    print(
        f"naive loop timed on the first {len(subset)} boxes ({naive_repeats} repeats) and scaled per box to "
        f"{args.boxes}; forward speed-up vectorised vs naive: {naive_full / fast_fwd:.0f}x"
    )
    print(f"max |vectorised - naive| on the timed boxes: {diff:.2e}")
    print(
        "maps are channels-last (as encode_frames makes them) except the 'NCHW map' row (+1 transpose copy)"
    )


if __name__ == "__main__":
    main()
