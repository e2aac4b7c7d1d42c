"""Evaluation throughput: frames scored per second with 0 / 2 / 4 decoding workers, against the decode-only
ceiling (the same snippets decoded, nothing embedded), in one run; and a check that every worker count
gives the serial path's scores bit for bit.

    python benchmarks/eval_speed.py                         # 20 two-minute 320x240 videos (the issue's setting)
    python benchmarks/eval_speed.py --videos 6 --seconds 20 # a quick run
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fgclip.data.frames import FrameSource
from fgclip.data.video import video_frame_times, write_video
from fgclip.evaluation.anomaly import SnippetLayout
from fgclip.evaluation.measures import score_videos
from fgclip.evaluation.snippet_options import SnippetOptions
from fgclip.evaluation.snippets import snippet_chunks
from fgclip.evaluation.zeroshot import PromptBank
from fgclip.model.configuration import tiny_config
from fgclip.model.modeling import FGCLIPModel


def make_videos(root: Path, count: int, seconds: float, fps: float = 30.0) -> dict[str, Path]:
    videos = {}
    for i in range(count):
        rng = np.random.default_rng(i)
        frames = int(seconds * fps)
        base = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
        shift = (np.arange(frames)[:, None, None, None] * 3) % 255  # motion, so the codec has work
        pixels = ((base[None].astype(np.int32) + shift) % 255).astype(np.uint8)
        videos[f"v{i:02d}"] = root / f"v{i:02d}.mp4"
        write_video(videos[f"v{i:02d}"], pixels, fps, gop_size=250)  # UCF-Crime-like keyframe interval
    return videos


def decode_only(videos: dict[str, Path], size: int, frames_per_snippet: int) -> float:
    source, started = FrameSource(size), time.perf_counter()
    for path in videos.values():
        times = video_frame_times(path)
        layout = SnippetLayout(len(times), 16, frames_per_snippet)
        for _ in snippet_chunks(path, source, times, layout, 256):
            pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--frames-per-snippet", type=int, default=8)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="eval_speed_"))
    videos = make_videos(root, args.videos, args.seconds)
    frames = sum(len(video_frame_times(p)) for p in videos.values())
    torch.manual_seed(0)
    size = 64
    model = FGCLIPModel(tiny_config(vocab_size=64, image_size=size, patch_size=8, projection_dim=64)).eval()
    bank = PromptBank(("Normal", "A"), torch.nn.functional.normalize(torch.randn(2, 64), dim=-1),
                      torch.tensor([0, 1]), logit_scale=100.0)  # fmt: skip
    ceiling = decode_only(videos, size, args.frames_per_snippet)
    print(
        f"{args.videos} videos x {args.seconds:g} s, 320x240 30 fps ({frames} native frames); tiny model, {size} px"
    )
    print(f"decode only (serial): {frames / ceiling:,.0f} frames/s")
    reference = None
    for workers in args.workers:
        started = time.perf_counter()
        options = SnippetOptions(frames_per_snippet=args.frames_per_snippet, workers=workers)
        scores = score_videos(model, videos, bank, FrameSource(size), options, progress=False)
        seconds = time.perf_counter() - started
        reference = reference or scores
        equal = all(np.array_equal(scores[n].frame_scores, reference[n].frame_scores) for n in videos)
        print(
            f"workers {workers}: {frames / seconds:,.0f} frames/s ({seconds:.1f} s); equal to serial: {equal}"
        )


if __name__ == "__main__":
    main()
