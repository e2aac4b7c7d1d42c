"""Can the data path feed a GPU? Training items per second per loader worker, and the workers a GPU needs.

    python benchmarks/feed_rate.py [--seconds 120] [--items 12]

Writes two H.264 stand-in videos with PyAV (x264 veryfast, crf 23, the default keyframe interval of 250,
B-frames; moving gradients, boxes and sensor-like noise): 320x240 at 30 fps like UCF-Crime, and 640x480. Clips
in the shapes of ucf_fgclip_with_v3.json (single-keyframe regions tens of seconds apart, a 10 s track, normal
30 s spans). Training-mode `ClipDataset` items (random frame sampling, 224 px, T = 8 and 16) are timed in one
thread (as in one DataLoader worker), decoded from the video and read from the frame cache (`fgclip data
cache`: 8 fps, 224x224, JPEG q90, and the raw uint8 memory-mapped option). Items per second per worker =
1 / median CPU seconds per item (this process's CPU time: on a shared machine other processes stretch wall
time, not it; a worker owns one core). Wall-clock rates are printed beside them.

Then the arithmetic: FLOPs per 224-px frame of the ViT-B/16 vision tower and per caption of the text tower,
from the released config (multiply-accumulates x 2; forward + backward = 3 x forward), the clips/s one H200
sustains at an assumed 40 % of its 989 TFLOP/s dense bf16, and the loader workers per GPU each source needs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

FPS = 30
SIZE = 224
H200_PEAK = 989e12  # dense bf16 FLOP/s
UTILISATION = 0.40
REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = next(
    (p / "shared" / "data" / "real" for p in REPO.parents if (p / "shared" / "data" / "real").is_dir()),
    REPO.parent / "shared" / "data" / "real",
)


# ----------------------------------------------------------------------------------------------- stand-ins
def frames(width: int, height: int, count: int, seed: int = 0):
    """Codec-realistic content: a drifting textured gradient, three moving boxes, light temporal noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gradient = np.stack(
        [xx / width * 200 + 20, yy / height * 200 + 20, (xx + yy) / (width + height) * 255], -1
    )
    texture = rng.normal(0, 18, (height // 8, width // 8, 3)).astype(np.float32).repeat(8, 0).repeat(8, 1)
    background = np.clip(gradient + texture, 0, 255).astype(np.int16)
    noise = [rng.integers(-3, 4, (height, width, 3), dtype=np.int16) for _ in range(8)]
    box_w, box_h = width // 8, height // 8
    for i in range(count):
        image = np.roll(background, i // 2, axis=1) + noise[i % 8]
        for k in range(3):
            x = int((i * (2 + k) + k * width // 3) % (width - box_w))
            y = int(height * (0.2 + 0.25 * k) + height / 12 * np.sin(i / (20 + k)))
            image[y : y + box_h, x : x + box_w] = (60 + k * 70, 200 - k * 60, 90)
        yield np.clip(image, 0, 255).astype(np.uint8)


def write_stand_in(path: Path, width: int, height: int, seconds: int) -> float:
    from fgclip.data.video import write_video

    start = time.perf_counter()
    write_video(path, frames(width, height, seconds * FPS), FPS, crf=23, options={"preset": "veryfast"})
    return time.perf_counter() - start


def manifest(video: str, seconds: int) -> list[dict]:
    """Six clips spread over the video, in the shapes of the real clip list (25-fps annotation grid)."""
    grid = 25
    last = (seconds - 3) * grid
    single = lambda frame: [{"frame": int(frame), "bbox": [0.2, 0.2, 0.6, 0.8]}]  # noqa: E731
    track = lambda start: [  # noqa: E731
        {"frame": int(start + f), "bbox": [0.1 + f / 8000, 0.2, 0.5 + f / 8000, 0.8]}
        for f in range(0, 251, 50)
    ]
    return [
        {"video": video, "global_caption": "a man snatched a red cloth and fled", "region_captions":
            ["a man in white", "a man in black", "a woman falls"],
         "box_infos": [single(0.05 * last), single(0.30 * last), single(0.55 * last)], "timestamps": None},
        {"video": video, "global_caption": "a car hits a man", "region_captions": ["a grey car"],
         "box_infos": [track(0.6 * last)], "timestamps": None},
        {"video": video, "global_caption": "two men fight", "region_captions": ["a man in red", "a man in blue"],
         "box_infos": [track(0.2 * last), single(0.25 * last)], "timestamps": None},
        {"video": video, "global_caption": "a quiet street", "region_captions": ["people walk"], "box_infos": [[]],
         "timestamps": [0.1 * seconds, 0.1 * seconds + 30]},
        {"video": video, "global_caption": "a shop at night", "region_captions": ["a clerk"], "box_infos": [[]],
         "timestamps": [0.5 * seconds, 0.5 * seconds + 30]},
        {"video": video, "global_caption": "a parking lot", "region_captions": ["cars park"], "box_infos": [[]],
         "timestamps": [0.7 * seconds, 0.7 * seconds + 25]},
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------- timing
def items_per_second(dataset, count: int) -> tuple[float, float]:
    """(1 / median CPU seconds, 1 / median wall seconds) per training item over `count` items (clips cycled)."""
    torch.manual_seed(0)
    dataset[0]  # warm: the video's index scan, imports
    cpu, wall = [], []
    for i in range(count):
        start, start_cpu = time.perf_counter(), time.process_time()
        dataset[i % len(dataset)]
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return 1.0 / statistics.median(cpu), 1.0 / statistics.median(wall)


# --------------------------------------------------------------------------------------------- arithmetic
def encoder_macs(tokens: int, width: int, mlp: int, layers: int) -> int:
    """Multiply-accumulates of a pre-LN transformer encoder over `tokens` tokens (no masking savings)."""
    per_token = (
        4 * width * width + 2 * width * mlp + 2 * tokens * width
    )  # q,k,v,out + MLP + scores and mixing
    return layers * tokens * per_token


def vision_flops_per_frame(vision: dict, image_size: int = SIZE) -> float:
    patches = (image_size // vision["patch_size"]) ** 2
    width = vision["hidden_size"]
    macs = encoder_macs(patches + 1, width, vision["intermediate_size"], vision["num_hidden_layers"])
    macs += patches * 3 * vision["patch_size"] ** 2 * width  # patch embedding
    return 2.0 * macs


def text_flops_per_caption(text: dict, tokens: int) -> float:
    return 2.0 * encoder_macs(
        tokens, text["hidden_size"], text["intermediate_size"], text["num_hidden_layers"]
    )


def released_config() -> dict:
    path = SHARED_REAL / "fgclip_base" / "config.json"
    if path.is_file():
        return json.loads(path.read_text())
    # OpenAI ViT-B/16's numbers, as in the released config.
    return {
        "vision_config": {
            "patch_size": 16,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
        },
        "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12},
    }


def gpu_clip_rate(num_frames: int, captions: int, caption_tokens: int, checkpointing: bool = False) -> dict:
    config = released_config()
    frame = vision_flops_per_frame(config["vision_config"])
    caption = text_flops_per_caption(config["text_config"], caption_tokens)
    passes = 4 if checkpointing else 3  # forward + backward (2x forward) [+ the recomputed forward]
    per_clip = passes * (num_frames * frame + captions * caption)
    return {
        "vision_gflops_fwd_per_frame": frame / 1e9,
        "text_gflops_fwd_per_caption": caption / 1e9,
        "tflops_per_clip_step": per_clip / 1e12,
        "clips_per_s": UTILISATION * H200_PEAK / per_clip,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=120, help="length of each stand-in video")
    parser.add_argument("--items", type=int, default=12, help="timed items per (source, T)")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--regions", type=int, default=4, help="captions per clip: 1 + R + R*K")
    parser.add_argument("--hard-negatives", type=int, default=4)
    parser.add_argument("--caption-tokens", type=int, default=32, help="padded caption length for the FLOPs")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one DataLoader worker

    from fgclip.data.dataset import ClipDataset, SamplingOptions
    from fgclip.data.formats.cliplist import read_clip_list
    from fgclip.data.frame_cache import FrameCache
    from fgclip.data.paths import VideoResolver
    from fgclip.data.text import CaptionTokenizer, load_tokenizer
    from fgclip.tools.cache_clips import cache_clips

    tokenizer = CaptionTokenizer(load_tokenizer(SHARED_REAL / "fgclip_base"))
    rates: dict[tuple[str, int], float] = {}
    bytes_per_frame: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fgclip-feed-") as tmp:
        tmp = Path(tmp)
        sources = {"H.264 320x240 (UCF-Crime-like)": (320, 240), "H.264 640x480": (640, 480)}
        clip_sets = {}
        for name, (width, height) in sources.items():
            video = f"{width}x{height}.mp4"
            made = write_stand_in(tmp / video, width, height, args.seconds)
            size_mb = (tmp / video).stat().st_size / 1e6
            print(
                f"{name}: {args.seconds} s at {FPS} fps, {size_mb:.1f} MB, written in {made:.0f} s",
                flush=True,
            )
            (tmp / f"{video}.json").write_text(json.dumps(manifest(video, args.seconds)))
            clip_sets[name] = read_clip_list(tmp / f"{video}.json", VideoResolver(tmp))
        for num_frames in args.frames:
            options = SamplingOptions(num_frames=num_frames, image_size=SIZE)
            for name, clips in clip_sets.items():
                dataset = ClipDataset(clips, tokenizer, options, train=True)
                rates[name, num_frames], wall = items_per_second(dataset, args.items)
                print(f"  T={num_frames} {name}: {rates[name, num_frames]:.1f} items/s (CPU), {wall:.1f} (wall)",
                      flush=True)  # fmt: skip
            clips = clip_sets["H.264 320x240 (UCF-Crime-like)"]
            for encoding, name in (
                ("jpeg", "frame cache, JPEG q90 224x224"),
                ("raw", "frame cache, raw uint8 mmap"),
            ):
                cache = FrameCache(
                    tmp / f"cache-{encoding}", size=(SIZE, SIZE), cache_fps=8, encoding=encoding
                )
                summary = cache_clips(clips, cache, options)
                file = cache.path_for(clips[0].video)
                bytes_per_frame[name] = file.stat().st_size / len(cache.frame_times(clips[0].video))
                dataset = ClipDataset(clips, tokenizer, options, train=True, frame_cache=cache)
                rates[name, num_frames], wall = items_per_second(dataset, args.items)
                print(f"  T={num_frames} {name}: {rates[name, num_frames]:.1f} items/s (CPU), {wall:.1f} (wall); "
                      f"{bytes_per_frame[name] / 1e3:.1f} kB/frame; {summary}", flush=True)  # fmt: skip

    captions = 1 + args.regions + args.regions * args.hard_negatives
    print(f"\nGPU side (released ViT-B/16 config; {captions} captions per clip of {args.caption_tokens} tokens; "
          f"{UTILISATION:.0%} of {H200_PEAK / 1e12:.0f} TFLOP/s):")  # fmt: skip
    need = {}
    for num_frames in args.frames:
        gpu = gpu_clip_rate(num_frames, captions, args.caption_tokens)
        need[num_frames] = gpu["clips_per_s"]
        print(f"  T={num_frames}: vision {gpu['vision_gflops_fwd_per_frame']:.1f} GFLOP fwd/frame, text "
              f"{gpu['text_gflops_fwd_per_caption']:.2f} GFLOP fwd/caption, {gpu['tflops_per_clip_step']:.2f} "
              f"TFLOP per clip (fwd+bwd) -> {gpu['clips_per_s']:.0f} clips/s per GPU")  # fmt: skip
    print("\n| source | T | items/s per worker | GPU clips/s | workers per GPU |\n|---|---|---|---|---|")
    for (name, num_frames), rate in rates.items():
        workers = math.ceil(need[num_frames] / rate)
        print(f"| {name} | {num_frames} | {rate:.1f} | {need[num_frames]:.0f} | {workers} |")
    for name, size in bytes_per_frame.items():
        print(f"{name}: {size / 1e3:.1f} kB per cached frame")


if __name__ == "__main__":
    main()
