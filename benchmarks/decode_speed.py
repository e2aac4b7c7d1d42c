"""Sparse decoding and the frame cache against "decode everything from the start, keep only the targets".

    python benchmarks/decode_speed.py            # 5-minute 640x480 30 fps video (~2-3 min on 2 cores)
    python benchmarks/decode_speed.py --quick    # 1-minute video

Makes an H.264 video on the fly (x264 preset veryfast, crf 23, the default keyframe interval of 250, B-frames;
content: moving gradients, moving boxes and sensor-like noise), kept in a temporary folder for the run, then
times, each variant in its OWN subprocess (clean peak RSS, no shared caches between variants):

  (a) 16 frames inside a 10 s span starting at 70% of the video (3.5 min of 5);
  (b) 32 frames spread uniformly over the whole video;
  (c) the clips of (a) and (b) read back from the frame cache (224x224, 8 fps, JPEG q90).

All variants return 224x224 RGB frames (the model input). Times are the median of 3 runs inside the worker;
the sparse decoder's per-file index is cleared before every run, so its demux-only scan is included. Peak MB is
the worker's peak RSS during the runs (`VmHWM`, reset after imports) minus its RSS after imports. The baseline stops once its last target is
found (it does not decode the tail of the video), so its numbers are the kindest possible to it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

WIDTH, HEIGHT, FPS = 640, 480, 30
SIZE = (224, 224)
CACHE_FPS = 8.0
REPEATS = 3


def light_import() -> None:
    """Make `import fgclip.data.video` skip fgclip/__init__.py, which pulls in torch and transformers (~7 s per
    worker process, nothing to do with decoding): register a bare package object with the same search path."""
    if "fgclip" in sys.modules:
        return
    spec = importlib.util.find_spec("fgclip")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("fgclip is not installed (pip install -e .)")
    package = types.ModuleType("fgclip")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["fgclip"] = package


# ------------------------------------------------------------------------------------------------------------
# the test video


def synthetic_frames(num_frames: int, seed: int = 0):
    """Cheap but codec-realistic content: a drifting textured gradient, moving boxes, light temporal noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    gradient = np.stack(
        [xx / WIDTH * 200 + 20, yy / HEIGHT * 200 + 20, (xx + yy) / (WIDTH + HEIGHT) * 255], -1
    )
    texture = rng.normal(0, 18, (HEIGHT // 8, WIDTH // 8, 3)).astype(np.float32).repeat(8, 0).repeat(8, 1)
    background = np.clip(gradient + texture, 0, 255).astype(np.int16)
    noise = [rng.integers(-3, 4, (HEIGHT, WIDTH, 3), dtype=np.int16) for _ in range(8)]
    for i in range(num_frames):
        image = np.roll(background, i // 2, axis=1) + noise[i % 8]
        for k in range(3):
            x = int((i * (2 + k) + k * 200) % (WIDTH - 80))
            y = int(100 + k * 120 + 40 * np.sin(i / (20 + k)))
            image[y : y + 60, x : x + 80] = (60 + k * 70, 200 - k * 60, 90)
        image[:, :, 0] += int(20 * np.sin(i / 90))
        yield np.clip(image, 0, 255).astype(np.uint8)


def make_video(path: Path, seconds: int) -> float:
    from fgclip.data.video import write_video

    start = time.perf_counter()
    write_video(path, synthetic_frames(seconds * FPS), FPS, crf=23, options={"preset": "veryfast"})
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------------------------
# variants (run inside a worker subprocess)


def baseline(path: str, times: np.ndarray) -> np.ndarray:
    """Decode from the first frame, keep the frame displayed at each target, stop after the last target."""
    import av

    from fgclip.data import video as video_module

    order = np.argsort(times, kind="stable")
    out = np.empty((len(times), SIZE[1], SIZE[0], 3), np.uint8)
    k = 0
    previous = None
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = video_module.DECODER_THREAD_TYPE  # same decoder settings as the sparse reader
        start = stream.start_time or 0
        tb = float(stream.time_base)
        for frame in container.decode(stream):
            t = (frame.pts - start) * tb
            while k < len(order) and t > times[order[k]] + 1e-6:  # `previous` is displayed at this target
                out[order[k]] = previous.to_ndarray(width=SIZE[0], height=SIZE[1], format="rgb24")
                k += 1
            if k == len(order):
                break
            previous = frame
        while k < len(order):  # targets on the last frame
            out[order[k]] = previous.to_ndarray(width=SIZE[0], height=SIZE[1], format="rgb24")
            k += 1
    return out


def sparse(path: str, times: np.ndarray) -> np.ndarray:
    from fgclip.data.video import clear_index_cache, decode_frames

    clear_index_cache()  # include the demux-only index scan in every run
    return decode_frames(path, times, size=SIZE)


def cached(path: str, times: np.ndarray, cache_root: str) -> np.ndarray:
    from fgclip.data.frame_cache import FrameCache

    return FrameCache(cache_root, size=SIZE).read(path, times)


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0); harmless when refused."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def worker(args) -> None:
    light_import()
    import av  # noqa: F401  (imports count in the baseline RSS, not in the variant's peak)

    import fgclip.data.frame_cache  # noqa: F401
    import fgclip.data.video as video_module

    if args.threads:
        video_module.DECODER_THREAD_TYPE = args.threads
    times = np.asarray(json.loads(args.times), dtype=np.float64)
    base = _status_mb("VmRSS")
    _reset_peak_rss()
    run = {
        "baseline": lambda: baseline(args.video, times),
        "sparse": lambda: sparse(args.video, times),
        "cache": lambda: cached(args.video, times, args.cache_root),
    }[args.worker]
    durations = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        frames = run()
        durations.append(time.perf_counter() - start)
    # VmHWM, not ru_maxrss: Linux carries the parent's peak RSS over fork+exec into ru_maxrss.
    peak = _status_mb("VmHWM")
    if args.save:
        np.save(args.save, frames)
    extra = {}
    if args.worker == "sparse":
        from fgclip.data.video import DecodeStats, clear_index_cache, decode_frames, video_frame_times

        clear_index_cache()
        start = time.perf_counter()
        extra["packets"] = len(video_frame_times(args.video))
        extra["scan_s"] = time.perf_counter() - start
        stats = DecodeStats()
        decode_frames(args.video, times, size=SIZE, stats=stats)
        extra.update(
            frames_decoded=stats.frames_decoded, seeks=stats.seeks, duplicates=stats.duplicate_frames
        )
    print(
        json.dumps(
            {"median_s": statistics.median(durations), "runs_s": durations, "peak_mb": peak - base, **extra}
        )
    )


def spawn(
    variant: str, video: Path, times: np.ndarray, *, cache_root: Path | None = None, save=None, threads=None
):
    command = [sys.executable, __file__, "--worker", variant, "--video", str(video)]
    command += ["--times", json.dumps([float(t) for t in times])]
    if cache_root is not None:
        command += ["--cache-root", str(cache_root)]
    if save is not None:
        command += ["--save", str(save)]
    if threads is not None:
        command += ["--threads", threads]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"worker {variant} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------------
# main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1-minute video instead of 5 minutes")
    parser.add_argument(
        "--threads-table",
        action="store_true",
        help="also time sparse decoding under each decoder threading mode",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--times", help=argparse.SUPPRESS)
    parser.add_argument("--cache-root", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--threads", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    light_import()
    import av

    from fgclip.data.frame_cache import FrameCache
    from fgclip.data.video import decode_frames, probe_video

    seconds = 60 if args.quick else 300
    total = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fgclip-decode-bench-") as tmp:
        tmp = Path(tmp)
        video = tmp / f"bench_{seconds}s.mp4"
        made = make_video(video, seconds)
        info = probe_video(video)
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            packets = [(p.pts, p.dts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None]
        keyframes = sum(k for _, _, k in packets)
        reordered = any(b[0] < a[0] for a, b in zip(packets[:-1], packets[1:], strict=True))
        print(
            f"video: {info.width}x{info.height} {info.fps:g} fps, {info.duration_s:.0f} s, {info.num_frames} frames, "
            f"{keyframes} keyframes (GOP ~{info.num_frames / keyframes:.0f}), B-frames: {reordered}, "
            f"{video.stat().st_size / 1e6:.1f} MB, generated in {made:.0f} s"
        )

        span_start = 0.7 * seconds
        span = (span_start, span_start + 10.0)
        times_a = span[0] + (np.arange(16) + 0.5) * 10.0 / 16
        times_b = (np.arange(32) + 0.5) * info.duration_s / 32
        cases = {"a": times_a, "b": times_b}

        cache_sizes = {}
        cache_roots = {}
        for name, clip in (("a", span), ("b", (0.0, info.duration_s - 1e-3))):
            root = tmp / f"cache_{name}"
            start = time.perf_counter()
            file = FrameCache(root, size=SIZE, cache_fps=CACHE_FPS).write(video, [clip])
            cache_sizes[name] = (clip, file.stat().st_size, time.perf_counter() - start)
            cache_roots[name] = root

        results = {}
        for name, times in cases.items():
            results[name, "baseline"] = spawn("baseline", video, times, save=tmp / f"{name}_base.npy")
            results[name, "sparse"] = spawn("sparse", video, times, save=tmp / f"{name}_sparse.npy")
            results[name, "cache"] = spawn(
                "cache", video, times, cache_root=cache_roots[name], save=tmp / f"{name}_cache.npy"
            )
            base, fast = np.load(tmp / f"{name}_base.npy"), np.load(tmp / f"{name}_sparse.npy")
            if not np.array_equal(base, fast):
                raise SystemExit(f"case ({name}): sparse frames differ from the baseline's")
            error = np.abs(np.load(tmp / f"{name}_cache.npy").astype(np.int16) - base).mean()
            results[name, "cache_error"] = float(error)
            grid = cache_sizes[name][0][0] + np.arange(16) / CACHE_FPS  # on the cache grid: JPEG loss only
            jpeg = FrameCache(cache_roots[name], size=SIZE).read(video, grid).astype(np.int16)
            results[name, "jpeg_error"] = float(np.abs(jpeg - decode_frames(video, grid, size=SIZE)).mean())

        threading = {}
        if args.threads_table:
            for mode in ("NONE", "SLICE", "FRAME", "AUTO"):
                for name, times in cases.items():
                    threading[name, mode] = spawn("sparse", video, times, threads=mode)["median_s"]

    def row(case, name, other, target, label):
        b, f = results[name, "baseline"], results[name, other]
        ratio = b["median_s"] / f["median_s"]
        met = "yes" if ratio >= target else "**no**"
        return (
            f"| {case} | {label} | {b['median_s']:.3f} | {f['median_s']:.4f} | {ratio:.1f}x | >= {target:g}x {met} "
            f"| {b['peak_mb']:.1f} | {f['peak_mb']:.1f} |"
        )

    minutes = f"{seconds // 60}-minute"
    print()
    print(
        f"Decode speed, {minutes} {WIDTH}x{HEIGHT} {FPS} fps H.264 (GOP 250), frames returned at {SIZE[0]}x{SIZE[1]}"
    )
    print(
        f"(median of {REPEATS}, each method in its own subprocess; peak MB = the worker's peak RSS above its RSS "
        f"after imports; `python {' '.join(sys.argv)}`)"
    )
    print()
    print("| case | method | baseline s | method s | ratio | target | baseline peak MB | method peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    print(row(f"(a) 16 frames in a 10 s span at {span[0]:.0f} s", "a", "sparse", 10, "sparse decode"))
    print(row(f"(b) 32 frames over all {info.duration_s:.0f} s", "b", "sparse", 1.5, "sparse decode"))
    print(row("(c) clip (a) from the frame cache", "a", "cache", 50, "frame cache"))
    print(row("(c) clip (b) from the frame cache", "b", "cache", 50, "frame cache"))
    print()
    for name in cases:
        s = results[name, "sparse"]
        print(
            f"sparse ({name}): {s['frames_decoded']} frames decoded of {info.num_frames}, {s['seeks']} seeks, "
            f"{s['duplicates']} decoded twice; index scan {s['scan_s'] * 1000:.0f} ms for {s['packets']} packets"
        )
    print(
        f"(b) remark: the targets are {info.duration_s / 32:.1f} s apart and a GOP lasts "
        f"{info.num_frames / keyframes / FPS:.1f} s, so seeking can only skip the part of each GOP after its "
        "target; most of the video is still decoded."
    )
    print()
    print(f"Frame cache ({SIZE[0]}x{SIZE[1]}, {CACHE_FPS:g} fps, JPEG q90):")
    for name, (clip, nbytes, write_s) in cache_sizes.items():
        frames = int(np.floor((clip[1] - clip[0]) * CACHE_FPS + 1e-9)) + 1
        print(
            f"- clip ({name}) [{clip[0]:.1f}, {clip[1]:.1f}] s: {frames} frames, {nbytes / 1e6:.2f} MB "
            f"({nbytes / frames / 1e3:.1f} KB/frame), written in {write_s:.1f} s; "
            f"mean |cache - decoded| = {results[name, 'jpeg_error']:.2f} gray levels on grid times (JPEG loss), "
            f"{results[name, 'cache_error']:.2f} at the case's times (JPEG + up to 1/{CACHE_FPS:g} s timing)"
        )
    if threading:
        print()
        print("Decoder threading (sparse decode, median s; results are bit-identical in every mode):")
        print()
        print("| case | NONE | SLICE | FRAME | AUTO |")
        print("|---|---|---|---|---|")
        for name in cases:
            cells = " | ".join(f"{threading[name, m]:.3f}" for m in ("NONE", "SLICE", "FRAME", "AUTO"))
            print(f"| ({name}) | {cells} |")
    print()
    print(f"total {time.perf_counter() - total:.0f} s on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
