"""Clip dataset: span -> T sample times -> sparse decode of only those frames -> boxes per frame -> tokens.

Frames come from the video (sparse PyAV decoding), from a pre-extracted frame cache when one is given (a time
it does not hold is a `FrameCacheMiss` naming the video and time, never a fallback to decoding), or, for image
records, from the image (T = 1). Boxes are computed at the presentation time of the frame actually shown (the
last native or cached frame at or before the sampled time), not at the sampled time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from fgclip.data.classes import clip_class_index
from fgclip.data.frame_cache import FrameCache, FrameCacheError, FrameCacheMiss, stale_videos
from fgclip.data.frames import FrameSource
from fgclip.data.records import FULL_FRAME, Clip, Region
from fgclip.data.sampling import reserve_region_times
from fgclip.data.text import CaptionTokenizer, caption_key
from fgclip.data.tracks import box_at, track_extent
from fgclip.data.video import VideoError, probe_video

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_MEAN = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(CLIP_STD).view(1, 3, 1, 1)


@dataclass(frozen=True)
class SamplingOptions:
    num_frames: int = 8
    image_size: int = 224
    max_regions: int = 4
    max_hard_negatives: int = 10
    context_s: float = 2.0  # abnormal clips: seconds of context on each side of the region tracks
    single_keyframe_hold_s: float = 0.5
    caption_max_length: int = 77  # region and hard-negative captions: CLIP's 77-position table
    global_caption_max_length: int = 248  # global captions: FG-CLIP's long position table


def to_pixel_values(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB -> (T, 3, H, W) float, normalised with CLIP's mean and std."""
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)
    return (pixels - _MEAN) / _STD


def clip_span(clip: Clip, duration_s: float, options: SamplingOptions) -> tuple[float, float]:
    """Normal: its timestamps, else the whole video. Abnormal: the union of its tracks plus context (its
    timestamps, else the whole video, when it has no track), clamped to the video."""
    if clip.timestamps is not None and not clip.is_abnormal:
        start, end = clip.timestamps
    else:
        extents = [track_extent(r.track, options.single_keyframe_hold_s) for r in clip.regions if r.track]
        if not extents:
            start, end = clip.timestamps if clip.timestamps is not None else (0.0, duration_s)
        else:
            start = min(e[0] for e in extents) - options.context_s
            end = max(e[1] for e in extents) + options.context_s
    start, end = max(0.0, start), min(end, duration_s)
    if end <= start:
        raise ValueError(
            f"{clip.sample_id} ({clip.video_key}): clip span [{start:.2f}, {end:.2f}] s is empty inside the "
            f"video's {duration_s:.2f} s"
        )
    return start, end


def sample_times(
    span: tuple[float, float], num_frames: int, jitter: torch.Tensor | None = None
) -> np.ndarray:
    """T times in the span: bin centres (evaluation) or one uniform draw per bin (training, `jitter` in [0,1))."""
    start, end = span
    offsets = jitter.numpy() if jitter is not None else np.full(num_frames, 0.5)
    return start + (np.arange(num_frames) + offsets) * (end - start) / num_frames


@dataclass(frozen=True)
class FramePlan:
    """One clip's frame selection: boxes are computed at `shown_s`, frames are read at `sampled_s`."""

    span: tuple[float, float]  # seconds of the video the T frames are drawn from
    sampled_s: np.ndarray  # (T,) sorted sample times (uniform draw + reserved region times)
    shown_s: np.ndarray  # (T,) presentation time of the frame displayed at each sample time


class ClipDataset(Dataset):
    """Map-style dataset of clips; each item is one clip's tensors, padded by `fgclip.data.collate.ClipCollator`."""

    def __init__(
        self,
        clips: list[Clip],
        tokenizer: CaptionTokenizer,
        options: SamplingOptions,
        train: bool,
        frame_cache: FrameCache | None = None,
        class_names: tuple[str, ...] | None = None,
    ):
        """`class_names`: the label prompt set's classes (Normal first), for each clip's `clip_class`."""
        self.clips, self.tokenizer, self.options, self.train = clips, tokenizer, options, train
        self.class_names = class_names
        self.frame_cache = frame_cache
        self.frames = FrameSource(options.image_size, frame_cache)
        cached = frame_cache is not None
        missing = [c for c in clips if not (cached and not c.is_image) and not c.video.is_file()]
        if missing:
            shown = "\n  ".join(f"{c.sample_id}: {c.video}" for c in missing[:10])
            raise FileNotFoundError(f"{len(missing)} video(s)/image(s) not found, e.g.:\n  {shown}")
        if cached:
            uncached = [c for c in clips if not c.is_image and not frame_cache.spans(c.video)]
            if uncached:
                shown = "\n  ".join(f"{c.sample_id}: {c.video}" for c in uncached[:10])
                raise FrameCacheMiss(
                    f"data.frame_cache {frame_cache.root}: {len(uncached)} video(s) have no cached frames "
                    f"(run `fgclip data cache` on the same manifests), e.g.:\n  {shown}"
                )
            stale = stale_videos(frame_cache, {c.video for c in clips if not c.is_image})
            if stale:
                shown = "\n  ".join(stale[:10])
                raise FrameCacheError(
                    f"data.frame_cache {frame_cache.root}: {len(stale)} video(s) changed since their frames were "
                    f"cached; rebuild the cache (`fgclip data cache` on the same manifests, --out "
                    f"{frame_cache.root}), e.g.:\n  {shown}"
                )

    def __len__(self) -> int:
        return len(self.clips)

    def labels(self) -> list[int]:
        return [clip.label for clip in self.clips]

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        times, frames = self._frames(clip)  # (T,) seconds of the frames shown, (T, H, W, 3) uint8
        regions = self._regions(clip, times)
        return {
            "sample_id": clip.sample_id,
            "pixel_values": to_pixel_values(frames),  # (T, 3, H, W)
            "caption_ids": self.tokenizer([clip.global_caption], self.options.global_caption_max_length)[0],
            "caption_key": caption_key(clip.global_caption),
            "clip_label": clip.label,
            "clip_class": clip_class_index(clip, self.class_names),
            **regions,
        }

    def _frames(self, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
        size = (self.options.image_size, self.options.image_size)
        if clip.is_image:
            return np.zeros(1), _load_image(clip.video, size)
        plan = self.frame_plan(clip)
        return plan.shown_s, self.read_frames(clip, plan.sampled_s, size)

    def frame_plan(self, clip: Clip) -> FramePlan:
        """Where the clip's T frames go: its span, the sampled times and the frames shown at them.

        Training draws from torch's global RNG (jitter, then the reserved region times), so the plan of an item
        is the one `__getitem__` would use under the same RNG state (`EpochSeededDataset` seeds it per item).
        """
        span = clip_span(clip, self._duration(clip), self.options)
        jitter = torch.rand(self.options.num_frames) if self.train else None
        times = sample_times(span, self.options.num_frames, jitter)
        tracks = [r.track for r in clip.regions[: self.options.max_regions] if r.track is not None]
        draw = (lambda: float(torch.rand(()))) if self.train else None
        times = reserve_region_times(times, tracks, span, self.options.single_keyframe_hold_s, draw)
        return FramePlan(span, times, self.frames.shown_times(clip.video, times))

    def read_frames(self, clip: Clip, times: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
        """(T, H, W, 3) uint8: the frames shown at `times`, from the frame cache (at its own size) when there is
        one, else decoded (at `size`; None: the video's own size)."""
        return self.frames.read(clip.video, times, size)

    def _duration(self, clip: Clip) -> float:
        if self.frame_cache is not None:
            # Cached spans were cut with the real duration: their end is the video's end wherever a clip
            # reached it, and beyond every clip's span otherwise — so clamping to it gives the same spans.
            return max(end for _, end in self.frame_cache.spans(clip.video))
        return _duration(clip.video)

    def _regions(self, clip: Clip, times: np.ndarray) -> dict:
        kept, boxes, visible = [], [], []
        for region in clip.regions[: self.options.max_regions]:
            region_boxes, region_visible = self.region_boxes(region, times)
            if region_visible.any():
                kept.append(region)
                boxes.append(region_boxes)
                visible.append(region_visible)
        negatives = [r.hard_negatives[: self.options.max_hard_negatives] for r in kept]
        length = self.options.caption_max_length
        return {
            "region_boxes": torch.tensor(
                np.stack(boxes, 1) if kept else np.zeros((len(times), 0, 4)), dtype=torch.float32
            ),
            "region_box_mask": torch.tensor(
                np.stack(visible, 1) if kept else np.zeros((len(times), 0), bool)
            ),
            "region_caption_ids": self.tokenizer([r.caption for r in kept], length),
            "region_caption_keys": [caption_key(r.caption) for r in kept],
            "region_labels": [r.label for r in kept],
            "hard_negative_ids": [self.tokenizer(list(n), length) for n in negatives],
            "dropped_regions": len(clip.regions) - len(kept),
        }

    def region_boxes(self, region: Region, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, 4) boxes at `times` (zeros where not visible) and (T,) visibility; a trackless region is the
        full frame throughout."""
        if region.track is None:
            return np.tile(np.array(FULL_FRAME), (len(times), 1)), np.ones(len(times), bool)
        hold = self.options.single_keyframe_hold_s
        found = [box_at(region.track, float(t), hold) for t in times]
        visible = np.array([b is not None for b in found])
        return np.array([b if b is not None else (0.0, 0.0, 0.0, 0.0) for b in found]), visible


@lru_cache(maxsize=65536)
def _duration(path: Path) -> float:
    return probe_video(path).duration_s


def _load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """(1, H, W, 3) uint8 RGB, squashed to `size` like `decode_frames(size=...)`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    except (OSError, UnidentifiedImageError) as exc:
        raise VideoError(f"{path}: cannot be read as an image ({exc})") from exc
    return np.array(rgb)[None]
