"""Typed records: what every manifest format is read into. Validated once; no dicts past this point.

Times are seconds of the video (annotation frames are converted when a manifest is read); boxes are
x1,y1,x2,y2 normalised to [0,1] of the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NORMAL, ABNORMAL = 0, 1
VIDEO, IMAGE = "video", "image"

Box = tuple[float, float, float, float]
FULL_FRAME: Box = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True)
class Keyframe:
    time_s: float
    box: Box
    enabled: bool = True  # False: the track ends at this keyframe (Label Studio semantics)


@dataclass(frozen=True)
class Track:
    keyframes: tuple[Keyframe, ...]  # sorted by time, at least one


@dataclass(frozen=True)
class Region:
    caption: str
    track: Track | None  # None: the full frame over every real frame (a normal clip's region)
    label: int
    hard_negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class Clip:
    sample_id: str  # "<manifest name>:<entry index>" — names the entry in every error message
    video: Path  # resolved path
    video_key: str  # the manifest's own `video` string (joins, leakage checks)
    global_caption: str
    regions: tuple[Region, ...]
    label: int
    # Explicit clip span in seconds. None: an abnormal clip spans its tracks plus context; a normal clip the
    # whole video.
    timestamps: tuple[float, float] | None = None
    group: str | None = None  # clips of one group (scene, camera) are batched together when asked to
    media: str = VIDEO  # IMAGE: a still image (format 6), loaded as a one-frame clip (T = 1)
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_abnormal(self) -> bool:
        return self.label == ABNORMAL

    @property
    def is_image(self) -> bool:
        return self.media == IMAGE
