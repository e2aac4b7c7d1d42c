"""`fgclip data cache`: pre-extract the frames of every clip's span into a `FrameCache`.

The spans are the dataset's own (`clip_span` with the same context and hold), so every time the dataset can
sample — uniform or reserved for a region — lies in a cached span; a training run that reads the cache
(`data.frame_cache`) with other span settings fails loudly on the first time outside them (`FrameCacheMiss`,
naming the video and time). Image records need no cache and are skipped.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from fgclip.data.dataset import SamplingOptions, clip_span
from fgclip.data.frame_cache import FrameCache
from fgclip.data.records import Clip
from fgclip.data.video import probe_video


@dataclass
class CacheSummary:
    videos: int
    clips: int
    images_skipped: int
    frames: int
    bytes: int
    seconds: float
    spans_seconds: float  # total length of the cached spans

    def __str__(self) -> str:
        per_frame = self.bytes / self.frames / 1e3 if self.frames else 0.0
        return (
            f"cached {self.frames} frames of {self.clips} clips from {self.videos} videos "
            f"({self.spans_seconds:.0f} s of video): {self.bytes / 1e6:.1f} MB ({per_frame:.1f} KB/frame) in "
            f"{self.seconds:.1f} s"
            + (f"; {self.images_skipped} image records skipped" if self.images_skipped else "")
        )


def cache_clips(
    clips: list[Clip], cache: FrameCache, sampling: SamplingOptions, progress=None
) -> CacheSummary:
    """Write each video's clip spans to the cache (one file per video; existing spans are merged)."""
    started = time.perf_counter()
    by_video: dict[Path, list[Clip]] = defaultdict(list)
    for clip in clips:
        if not clip.is_image:
            by_video[clip.video].append(clip)
    frames = size = 0
    seconds = 0.0
    for k, (video, video_clips) in enumerate(by_video.items()):
        duration = probe_video(video).duration_s
        spans = [clip_span(clip, duration, sampling) for clip in video_clips]
        file = cache.write(video, spans)
        size += file.stat().st_size
        frames += len(cache.frame_times(video))
        seconds += sum(end - start for start, end in cache.spans(video))
        if progress is not None:
            progress(k + 1, len(by_video), video)
    return CacheSummary(
        videos=len(by_video),
        clips=sum(len(v) for v in by_video.values()),
        images_skipped=sum(c.is_image for c in clips),
        frames=frames,
        bytes=size,
        seconds=time.perf_counter() - started,
        spans_seconds=seconds,
    )
