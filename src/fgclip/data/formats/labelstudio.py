"""Label Studio `videorectangle` export (DESIGN §7.4) -> clip-list entries (format 1).

One task (video) -> one entry; each `videorectangle` result of its annotation -> one region track; keyframes
`{frame, x, y, width, height (percent of the frame), enabled, time}` -> `{frame, bbox [x1, y1, x2, y2] in
[0, 1], enabled}`.

Frames and time. Label Studio numbers video frames from 1 on a grid of the `<Video framerate>` of the labeling
config (25 here), and the editor shows frame f by seeking the video to f / framerate; the export's `time` is
that same instant (`time = frame / framerate`, editor `VideoRegion.serialize`, `VideoCanvas.goToFrame`). So a
keyframe's instant is `frame / annotation_fps`: frame numbers are copied unchanged, and the clip-list reader's
`time = frame / annotation_fps` gives exactly the instant the annotator saw. They are NOT native frame indices
of the video (which is usually 30 fps): that misreading is what the original system did. The grid is taken
from the export itself (every keyframe's `frame / time`); an explicit `annotation_fps` that disagrees is an
error, and an export without `time` fields needs one.

Lifespans. In Label Studio a box is visible from a keyframe while that keyframe is `enabled`; a keyframe with
`enabled: false` is the last one of its span (shown on its own frame). A track whose LAST keyframe is still
enabled stays visible to the end of the video in the editor; `open_track_end="video_end"` (default) keeps that
meaning by closing such a track with a copy of its last box at the task's last frame (`framesCount`), and
`"last_keyframe"` leaves it as the clip-list semantics read it (the span ends at the last keyframe; a lone
keyframe is held `single_keyframe_hold_s`). The number of tracks extended is reported.

Captions. An export holds labels, not captions: a region's caption is its labels joined with ", " and the
global caption is the task's `data[caption_field]` (default: `data["caption"]`, else `data["category"]` with
"_" read as a space). Both are reported per file so the user can replace them.

Videos. `data[video_field]` (default "video"); Label Studio's local-files URL prefix (`/data/local-files/?d=`)
is removed and the rest URL-decoded, so the path resolves against `video_root` like any other manifest.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import unquote

from fgclip.data.errors import WARNING, EntryProblem
from fgclip.data.formats.conversion import Conversion

LOCAL_FILES_PREFIX = "/data/local-files/?d="
OPEN_TRACK_END = ("video_end", "last_keyframe")
_FPS_TOLERANCE = 1e-3  # relative


def is_labelstudio_export(data: Any) -> bool:
    return (
        isinstance(data, list)
        and bool(data)
        and isinstance(data[0], dict)
        and "annotations" in data[0]
        and "data" in data[0]
    )


def convert_labelstudio(
    tasks: Any,
    source: str,
    annotation_fps: float | None = None,
    open_track_end: str = "video_end",
    caption_field: str | None = None,
    video_field: str = "video",
) -> Conversion:
    """The export -> format-1 entries (never raises for a bad task; every problem is in the Conversion)."""
    if open_track_end not in OPEN_TRACK_END:
        raise ValueError(f"open_track_end must be one of {OPEN_TRACK_END}, got {open_track_end!r}")
    conversion = Conversion(source=source, format="labelstudio")
    if not isinstance(tasks, list):
        conversion.problems.append(EntryProblem(source, None, None, None, "expected a JSON list of tasks"))
        return conversion
    conversion.num_source_entries = len(tasks)
    conversion.annotation_fps = _grid(tasks, source, annotation_fps, conversion)
    extended = 0
    for index, task in enumerate(tasks):
        task_converter = _Task(source, index, task, open_track_end, caption_field, video_field, conversion)
        entry = task_converter.entry()
        extended += task_converter.extended
        if entry is not None:
            conversion.add(entry, task_converter.origin)
    if extended:
        conversion.problems.append(
            EntryProblem(
                source, None, None, "enabled",
                f"{extended} track(s) end on an enabled keyframe: extended to the task's last frame "
                f"(framesCount), as Label Studio shows them (open_track_end={open_track_end!r})",
                WARNING,
            )
        )  # fmt: skip
    return conversion


def _grid(tasks: list, source: str, given: float | None, conversion: Conversion) -> float | None:
    """The annotation fps: from the keyframes' own frame/time, checked against an explicit value."""
    rates = {
        round(kf["frame"] / kf["time"], 6)
        for task in tasks
        for kf in _keyframes(task)
        if isinstance(kf.get("time"), (int, float))
        and 0 < kf["time"] < math.inf  # a non-finite time says nothing about the grid
        and isinstance(kf.get("frame"), (int, float))
        and math.isfinite(kf["frame"])
    }
    if not rates:
        if given is None:
            conversion.problems.append(
                EntryProblem(source, None, None, "time", "no keyframe has a `time`: give the annotation fps")
            )
        return given
    low, high = min(rates), max(rates)
    if (high - low) / low > _FPS_TOLERANCE:
        conversion.problems.append(
            EntryProblem(
                source, None, None, "time",
                f"keyframes disagree on the frame rate (frame/time from {low:g} to {high:g} fps): mixed labeling "
                "configs? Export them separately",
            )
        )  # fmt: skip
        return given
    if given is not None and abs(given - low) / low > _FPS_TOLERANCE:
        conversion.problems.append(
            EntryProblem(
                source, None, None, "time",
                f"the export's keyframes are on a {low:g}-fps grid (frame/time) but {given:g} was asked for",
            )
        )  # fmt: skip
    return float(round(low, 3))


def _not_a_number(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, (int, float))


def _keyframes(task: Any):
    if not isinstance(task, dict):
        return
    for annotation in task.get("annotations") or []:
        for result in (annotation or {}).get("result") or [] if isinstance(annotation, dict) else []:
            value = result.get("value") if isinstance(result, dict) else None
            for kf in (value or {}).get("sequence") or [] if isinstance(value, dict) else []:
                if isinstance(kf, dict):
                    yield kf


class _Task:
    def __init__(self, source, index, task, open_track_end, caption_field, video_field, conversion):
        self.source, self.index, self.task, self.conversion = source, index, task, conversion
        self.open_track_end, self.caption_field, self.video_field = open_track_end, caption_field, video_field
        # Problems name the task (its id and position in the export); entry indices count converted entries.
        self.origin = f"task {task.get('id') if isinstance(task, dict) else '?'} (#{index} in the export)"
        self.video: str | None = None
        self.extended = 0
        self.failed = False

    def problem(self, field_name: str | None, message: str, severity: str = "error") -> None:
        self.failed |= severity == "error"
        self.conversion.problems.append(
            EntryProblem(self.source, None, self.video, field_name, message, severity, self.origin)
        )

    def entry(self) -> dict | None:
        if not isinstance(self.task, dict) or not isinstance(self.task.get("data"), dict):
            self.problem("data", "a task must be an object with a `data` object")
            return None
        self.video = self._video()
        caption = self._global_caption()
        annotation = self._annotation()
        regions = [] if annotation is None else self._regions(annotation)
        if self.failed:
            return None
        if not regions:
            self.problem("result", "no videorectangle region with keyframes")
            return None
        return {
            "video": self.video,
            "global_caption": caption,
            "region_captions": [caption for caption, _ in regions],
            "box_infos": [track for _, track in regions],
            "timestamps": None,
        }

    def _video(self) -> str | None:
        url = self.task["data"].get(self.video_field)
        if not isinstance(url, str) or not url.strip():
            self.problem(f"data.{self.video_field}", "missing or empty video")
            return None
        return unquote(url[len(LOCAL_FILES_PREFIX) :]) if url.startswith(LOCAL_FILES_PREFIX) else url

    def _global_caption(self) -> str | None:
        data = self.task["data"]
        if self.caption_field is not None:
            text = data.get(self.caption_field)
        else:
            text = data.get("caption")
            if text is None and isinstance(data.get("category"), str):
                text = data["category"].replace("_", " ")
        if not isinstance(text, str) or not text.strip():
            where = self.caption_field or "caption/category"
            self.problem(
                f"data.{where}", "no global caption (set caption_field to the task field holding it)"
            )
            return None
        return text.strip()

    def _annotation(self) -> dict | None:
        done = [
            a
            for a in self.task.get("annotations") or []
            if isinstance(a, dict) and not a.get("was_cancelled")
        ]
        if len(done) != 1:
            self.problem(
                "annotations",
                f"{len(done)} completed annotations: a clip list holds one per video (export one annotator's)",
            )
            return None
        return done[0]

    def _regions(self, annotation: dict) -> list[tuple[str, list[dict]]]:
        regions = []
        results = annotation.get("result") or []
        for r, result in enumerate(results):
            if not isinstance(result, dict) or result.get("type") != "videorectangle":
                kind = result.get("type") if isinstance(result, dict) else type(result).__name__
                self.problem(f"result[{r}]", f"not a videorectangle ({kind!r}): ignored", WARNING)
                continue
            value = result.get("value") if isinstance(result.get("value"), dict) else {}
            labels = value.get("labels")
            if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
                self.problem(f"result[{r}].value.labels", "needs at least one label (the region caption)")
                continue
            track = self._track(f"result[{r}].value", value)
            if track:
                regions.append((", ".join(labels), track))
            elif track is not None:
                self.problem(
                    f"result[{r}].value.sequence",
                    f"region {result.get('id')!r} has no keyframes: left out",
                    WARNING,
                )
        return regions

    def _track(self, where: str, value: dict) -> list[dict] | None:
        """Format-1 keyframes of one result ([] when it has none); None when a keyframe is bad."""
        sequence = value.get("sequence")
        if not isinstance(sequence, list):
            self.problem(f"{where}.sequence", "missing keyframe sequence")
            return None
        track = [self._keyframe(f"{where}.sequence[{k}]", kf) for k, kf in enumerate(sequence)]
        if any(kf is None for kf in track):
            return None
        track.sort(key=lambda kf: kf["frame"])
        if track and track[-1]["enabled"] and self.open_track_end == "video_end":
            last = value.get("framesCount")
            if isinstance(last, int) and last > track[-1]["frame"]:
                track.append({"frame": last, "bbox": list(track[-1]["bbox"]), "enabled": False})
                self.extended += 1
        return track

    def _keyframe(self, where: str, kf: Any) -> dict | None:
        if not isinstance(kf, dict):
            self.problem(where, f"a keyframe must be an object, got {type(kf).__name__}")
            return None
        frame = kf.get("frame")
        numbers = [kf.get(k) for k in ("x", "y", "width", "height")]
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 1:
            self.problem(
                f"{where}.frame", f"must be a frame number >= 1 (Label Studio counts from 1), got {frame!r}"
            )
            return None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            self.problem(where, f"x, y, width, height must be numbers, got {numbers}")
            return None
        if not all(math.isfinite(v) for v in numbers):
            self.problem(where, f"x, y, width, height must be finite, got {numbers}")
            return None
        time = kf.get("time")  # optional; when given, the instant the annotator saw
        if time is not None and (_not_a_number(time) or not math.isfinite(time)):
            self.problem(f"{where}.time", f"must be finite seconds, got {time!r}")
            return None
        if kf.get("rotation", 0) not in (0, 0.0):
            self.problem(
                f"{where}.rotation", f"rotated boxes ({kf['rotation']} deg) cannot be axis-aligned boxes"
            )
            return None
        enabled = kf.get("enabled", True)
        if not isinstance(enabled, bool):
            self.problem(f"{where}.enabled", f"must be true or false, got {enabled!r}")
            return None
        x, y, w, h = (float(v) / 100.0 for v in numbers)
        return {"frame": frame, "bbox": [x, y, x + w, y + h], "enabled": enabled}
