"""Clip-list manifests (DESIGN §7.1, fgclip-vad / VAGTA) and hard-negative files (§7.2) -> `Clip` records.

Optional fields beyond §7.1: `label` ("normal"/"abnormal"; default: abnormal iff it has box tracks) and
`group` (a scene or camera id; `data.batch_by_group` puts clips of one group in the same batch, so the
global loss sees a normal and an abnormal clip of the same scene side by side).

Keyframe `frame` numbers live on the annotation grid (`annotation_fps`, 25 for VAGTA-style files) and are
converted to seconds here; nothing downstream sees annotation frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fgclip.data.errors import EntryProblem, ManifestError
from fgclip.data.records import ABNORMAL, NORMAL, Clip, Keyframe, Region, Track


@dataclass(frozen=True)
class ReadOptions:
    annotation_fps: float = 25.0
    box_tolerance: float = 0.02  # coordinates outside [0,1] by less than this are clipped (float error)


def load_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ManifestError(
            [EntryProblem(str(path), None, None, None, f"not valid JSON: {error}")]
        ) from error


def read_clip_list(
    path: str | Path,
    resolve_video=None,
    options: ReadOptions = ReadOptions(),
    hard_negatives: dict[tuple[str, int], tuple[str, ...]] | None = None,
) -> list[Clip]:
    """Read a clip-list manifest; every problem in the file is collected and raised together."""
    data = load_json(path)
    name = str(path)
    if not isinstance(data, list):
        raise ManifestError(
            [
                EntryProblem(
                    name, None, None, None, f"expected a JSON list of clips, got {type(data).__name__}"
                )
            ]
        )
    clips, problems = [], []
    for index, entry in enumerate(data):
        reader = _EntryReader(name, index, entry, options)
        clip = reader.read(resolve_video or Path, hard_negatives or {})
        problems.extend(reader.problems)
        if clip is not None and not reader.problems:
            clips.append(clip)
    if any(p.severity == "error" for p in problems):
        raise ManifestError([p for p in problems if p.severity == "error"])
    return clips


def read_hard_negatives(path: str | Path) -> dict[tuple[str, int], tuple[str, ...]]:
    """Hard-negative file -> {(video, region_index): negatives}; duplicate keys are an error."""
    data = load_json(path)
    name = str(path)
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ManifestError(
            [EntryProblem(name, None, None, "items", "expected an object with an 'items' list")]
        )
    table: dict[tuple[str, int], tuple[str, ...]] = {}
    problems = []
    for index, item in enumerate(items):
        video = item.get("video") if isinstance(item, dict) else None
        region = item.get("region_index") if isinstance(item, dict) else None
        negatives = item.get("hard_negative") if isinstance(item, dict) else None
        if not isinstance(video, str) or not isinstance(region, int) or region < 0:
            problems.append(
                EntryProblem(
                    name, index, video, "video/region_index", "needs a video string and region_index >= 0"
                )
            )
        elif not isinstance(negatives, list) or not all(isinstance(n, str) and n.strip() for n in negatives):
            problems.append(
                EntryProblem(name, index, video, "hard_negative", "must be a list of non-empty strings")
            )
        elif (video, region) in table:
            problems.append(
                EntryProblem(name, index, video, "region_index", f"duplicate item for region {region}")
            )
        else:
            table[(video, region)] = tuple(negatives)
    if problems:
        raise ManifestError(problems)
    return table


class _EntryReader:
    def __init__(self, file: str, index: int, entry: Any, options: ReadOptions):
        self.file, self.index, self.entry, self.options = file, index, entry, options
        self.video = entry.get("video") if isinstance(entry, dict) else None
        self.problems: list[EntryProblem] = []

    def problem(self, field: str | None, message: str) -> None:
        self.problems.append(EntryProblem(self.file, self.index, self.video, field, message))

    def read(self, resolve_video, hard_negatives) -> Clip | None:
        if not isinstance(self.entry, dict):
            self.problem(None, f"expected an object, got {type(self.entry).__name__}")
            return None
        video, caption = self.entry.get("video"), self.entry.get("global_caption")
        if not isinstance(video, str) or not video.strip():
            self.problem("video", "missing or empty")
        if not isinstance(caption, str) or not caption.strip():
            self.problem("global_caption", "missing or empty")
        captions = self._region_captions()
        tracks = self._tracks()
        timestamps = self._timestamps()
        if self.problems or captions is None or tracks is None:
            return None
        label = self._label(tracks)
        regions = self._regions(captions, tracks, label, hard_negatives)
        group = self.entry.get("group")
        if group is not None and (not isinstance(group, str) or not group.strip()):
            self.problem("group", f"must be a non-empty string when given, got {group!r}")
        if label == NORMAL and timestamps is None:
            self.problem("timestamps", "a clip without box tracks needs a time span [start_s, end_s]")
        if self.problems:
            return None
        return Clip(
            sample_id=f"{Path(self.file).name}:{self.index}",
            video=Path(resolve_video(video)),
            video_key=video,
            global_caption=caption.strip(),
            regions=tuple(regions),
            label=label,
            timestamps=timestamps,
            group=group,
        )

    def _region_captions(self) -> list[str] | None:
        captions = self.entry.get("region_captions")
        if not isinstance(captions, list) or not captions:
            self.problem("region_captions", "must be a non-empty list of captions")
            return None
        for i, caption in enumerate(captions):
            if not isinstance(caption, str) or not caption.strip():
                self.problem(f"region_captions[{i}]", "empty caption")
        return [c.strip() for c in captions if isinstance(c, str)]

    def _tracks(self) -> list[Track | None] | None:
        infos = self.entry.get("box_infos")
        if not isinstance(infos, list):
            self.problem("box_infos", "must be a list of tracks ([] or [[]] for normal clips)")
            return None
        return [self._track(i, keyframes) for i, keyframes in enumerate(infos)]

    def _track(self, i: int, keyframes: Any) -> Track | None:
        if not isinstance(keyframes, list):
            self.problem(f"box_infos[{i}]", "a track must be a list of keyframes")
            return None
        parsed = [self._keyframe(f"box_infos[{i}][{k}]", kf) for k, kf in enumerate(keyframes)]
        parsed = sorted((kf for kf in parsed if kf is not None), key=lambda kf: kf.time_s)
        times = [kf.time_s for kf in parsed]
        if len(set(times)) != len(times):
            self.problem(f"box_infos[{i}]", "two keyframes on the same frame")
        return Track(tuple(parsed)) if parsed else None

    def _keyframe(self, field: str, keyframe: Any) -> Keyframe | None:
        if not isinstance(keyframe, dict):
            self.problem(field, "a keyframe must be an object {frame, bbox}")
            return None
        frame, bbox = keyframe.get("frame"), keyframe.get("bbox")
        if isinstance(frame, bool) or not isinstance(frame, (int, float)) or frame < 0:
            self.problem(f"{field}.frame", f"must be a frame number >= 0, got {frame!r}")
            return None
        box = self._box(f"{field}.bbox", bbox)
        if box is None:
            return None
        enabled = keyframe.get("enabled", True)
        if not isinstance(enabled, bool):
            self.problem(f"{field}.enabled", f"must be true or false, got {enabled!r}")
        return Keyframe(float(frame) / self.options.annotation_fps, box, bool(enabled))

    def _box(self, field: str, bbox: Any):
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        ):
            self.problem(field, f"must be [x1, y1, x2, y2] numbers, got {bbox!r}")
            return None
        tolerance = self.options.box_tolerance
        if any(v < -tolerance or v > 1 + tolerance for v in bbox):
            self.problem(field, f"{bbox} lies outside [0, 1] by more than the tolerance {tolerance}")
            return None
        x1, y1, x2, y2 = (min(max(float(v), 0.0), 1.0) for v in bbox)
        if x1 >= x2 or y1 >= y2:
            self.problem(field, f"empty or inverted box {bbox} (needs x1 < x2 and y1 < y2)")
            return None
        return (x1, y1, x2, y2)

    def _timestamps(self) -> tuple[float, float] | None:
        span = self.entry.get("timestamps")
        if span is None:
            return None
        if not (isinstance(span, list) and len(span) == 2 and all(isinstance(v, (int, float)) for v in span)):
            self.problem("timestamps", f"must be null or [start_s, end_s], got {span!r}")
            return None
        start, end = float(span[0]), float(span[1])
        if not 0 <= start < end:
            self.problem("timestamps", f"needs 0 <= start < end, got {span!r}")
            return None
        return start, end

    def _label(self, tracks: list[Track | None]) -> int:
        label = self.entry.get("label")
        if label is None:
            return ABNORMAL if any(t is not None for t in tracks) else NORMAL
        names = {"normal": NORMAL, "abnormal": ABNORMAL, NORMAL: NORMAL, ABNORMAL: ABNORMAL}
        if label not in names:
            self.problem("label", f"must be 'normal', 'abnormal', 0 or 1, got {label!r}")
            return NORMAL
        return names[label]

    def _regions(self, captions, tracks, label, hard_negatives) -> list[Region]:
        present = [t for t in tracks if t is not None]
        if label == NORMAL and not present:
            tracks = [None] * len(captions)  # the region of a normal clip is the full frame
        elif len(tracks) != len(captions):
            self.problem("box_infos", f"{len(tracks)} tracks for {len(captions)} region captions")
            return []
        regions = []
        for i, (caption, track) in enumerate(zip(captions, tracks, strict=True)):
            if track is None and label == ABNORMAL:
                self.problem(f"box_infos[{i}]", "an abnormal clip's region has an empty track")
                continue
            negatives = hard_negatives.get((self.video, i), ())
            regions.append(Region(caption=caption, track=track, label=label, hard_negatives=negatives))
        return regions
