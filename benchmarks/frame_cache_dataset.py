"""Dataset items decoded from the video vs read from the frame cache (`fgclip data cache`), on real-shaped clips.

    python benchmarks/frame_cache_dataset.py            # 3-minute 640x480 30 fps video (~1-2 min on 2 cores)

One H.264 video (x264 veryfast, crf 23, default keyframe interval 250, B-frames; the synthetic content of
decode_speed.py), three clips in the shapes of ucf_fgclip_with_v3.json:
  A  abnormal, three single-keyframe regions 25 s and 44 s apart (the file's first entry): a ~75 s span, T = 8
     frames, three of them reserved inside the regions' +-0.5 s windows;
  B  abnormal, one 10 s multi-keyframe track;
  C  normal, a 30 s span.
`cache_clips` (what `fgclip data cache` runs) writes the spans at 8 fps, 224x224, JPEG q90. Then `ClipDataset`
items (evaluation sampling, deterministic; and training sampling) are timed, median of REPEATS, decoding vs
cache, in this one process with warm per-file indexes (as in a long training run; the first access to a video
also pays its demux-only index scan, printed separately).
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPEATS = 5
SECONDS = 180
SIZE = 224


def _decode_speed_module():
    spec = importlib.util.spec_from_file_location("decode_speed", Path(__file__).with_name("decode_speed.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _manifest(video: str) -> list[dict]:
    box = [0.2, 0.2, 0.6, 0.8]
    single = lambda frame: [{"frame": frame, "bbox": box}]  # noqa: E731
    track = [
        {"frame": f, "bbox": [0.1 + f / 40000, 0.2, 0.5 + f / 40000, 0.8]} for f in range(3000, 3251, 50)
    ]
    return [
        {"video": video, "global_caption": "three events", "region_captions": ["a", "b", "c"],
         "box_infos": [single(500), single(1124), single(2220)], "timestamps": None},
        {"video": video, "global_caption": "a long event", "region_captions": ["d"], "box_infos": [track],
         "timestamps": None},
        {"video": video, "global_caption": "a street", "region_captions": ["people walk"], "box_infos": [[]],
         "timestamps": [140.0, 170.0]},
    ]  # fmt: skip


def _median_ms(function, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    from fgclip.data.dataset import CLIP_MEAN, CLIP_STD, ClipDataset, SamplingOptions
    from fgclip.data.formats.cliplist import read_clip_list
    from fgclip.data.frame_cache import FrameCache
    from fgclip.data.paths import VideoResolver
    from fgclip.data.text import CaptionTokenizer, build_word_tokenizer
    from fgclip.data.video import clear_index_cache
    from fgclip.synthetic import synth_vocabulary
    from fgclip.tools.cache_clips import cache_clips

    bench = _decode_speed_module()
    tokenizer = CaptionTokenizer(build_word_tokenizer(synth_vocabulary()))
    options = SamplingOptions(num_frames=8, image_size=SIZE)
    with tempfile.TemporaryDirectory(prefix="fgclip-cache-bench-") as tmp:
        tmp = Path(tmp)
        made = bench.make_video(tmp / "video.mp4", SECONDS)
        (tmp / "m.json").write_text(json.dumps(_manifest("video.mp4")))
        clips = read_clip_list(tmp / "m.json", VideoResolver(tmp))
        print(f"video: {bench.WIDTH}x{bench.HEIGHT} {bench.FPS} fps, {SECONDS} s, "
              f"{(tmp / 'video.mp4').stat().st_size / 1e6:.1f} MB, generated in {made:.0f} s")  # fmt: skip

        cache = FrameCache(tmp / "cache", size=(SIZE, SIZE), cache_fps=8)
        summary = cache_clips(clips, cache, options)
        print(f"`fgclip data cache`: {summary}")

        decoded = ClipDataset(clips, tokenizer, options, train=False)
        cached = ClipDataset(clips, tokenizer, options, train=False, frame_cache=cache)
        clear_index_cache()
        start = time.perf_counter()
        decoded[0]
        first_ms = (time.perf_counter() - start) * 1000
        mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        gray = lambda item: (item["pixel_values"] * std + mean) * 255  # noqa: E731
        print()
        print("| clip | span s | sampling | decode ms | cache ms | ratio | mean abs diff (gray levels) |")
        print("|---|---|---|---|---|---|---|")
        for index, name in enumerate(("A: 3 regions 25-44 s apart", "B: 10 s track", "C: normal 30 s")):
            for train in (False, True):
                decoded.train = cached.train = train
                torch.manual_seed(0)
                decode_ms = _median_ms(lambda i=index: decoded[i])
                torch.manual_seed(0)
                cache_ms = _median_ms(lambda i=index: cached[i])
                torch.manual_seed(1)
                a = decoded[index]
                torch.manual_seed(1)
                b = cached[index]
                diff = float((gray(a) - gray(b)).abs().mean())
                span = np.ptp([float(t) for t in _span(clips[index], decoded)])
                print(f"| {name} | {span:.1f} | {'train' if train else 'eval'} | {decode_ms:.0f} | {cache_ms:.1f} | "
                      f"{decode_ms / cache_ms:.0f}x | {diff:.1f} |")  # fmt: skip
        print()
        print(f"first item of a cold process (includes the video's demux-only index scan): {first_ms:.0f} ms")


def _span(clip, dataset):
    from fgclip.data.dataset import clip_span

    return clip_span(clip, dataset._duration(clip), dataset.options)


if __name__ == "__main__":
    main()
