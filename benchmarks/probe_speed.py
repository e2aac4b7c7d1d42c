"""Start-up video probe: headers probed serially vs in a thread pool, a second run from the on-disk index, and the
opt-in packet scan (`fgclip data check --scan`), all in one run on the same videos.

    python benchmarks/probe_speed.py                           # 200 ten-second 160x120 videos, 2 workers
    python benchmarks/probe_speed.py --videos 50 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from fgclip.data.probe import ProbeIndex, probe_media
from fgclip.data.video import write_video


def make_videos(root: Path, count: int, seconds: float, fps: float = 30.0) -> list[Path]:
    videos = []
    for i in range(count):
        base = np.random.default_rng(i).integers(0, 255, (120, 160, 3), dtype=np.uint8)
        frames = (
            np.roll(base, 3 * t, axis=1) for t in range(int(seconds * fps))
        )  # motion: the codec has work
        videos.append(write_video(root / f"v{i:03d}.mp4", frames, fps, gop_size=250))
    return videos


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        videos = make_videos(root, args.videos, args.seconds)
        serial = timed(lambda: probe_media(videos, workers=1))
        print(f"{len(videos)} videos of {args.seconds:g} s; headers, 1 thread: {serial:.3f} s")
        for workers in args.workers:
            pooled = timed(lambda w=workers: probe_media(videos, workers=w))
            print(f"  headers, {workers} threads: {pooled:.3f} s ({serial / pooled:.2f}x the serial probe)")
        index = root / "index.json"
        cold = timed(lambda: probe_media(videos, index=ProbeIndex(index), workers=max(args.workers)))
        warm = timed(lambda: probe_media(videos, index=ProbeIndex(index), workers=max(args.workers)))
        print(
            f"  with the index: first run {cold:.3f} s, second run {warm:.4f} s ({cold / warm:.0f}x faster)"
        )
        scan = timed(lambda: probe_media(videos, workers=max(args.workers), scan=True))
        print(
            f"  --scan (every packet read, none decoded): {scan:.3f} s ({scan / serial:.1f}x the header probe)"
        )


if __name__ == "__main__":
    main()
