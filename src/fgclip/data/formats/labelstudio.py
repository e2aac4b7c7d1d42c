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

from collections import Counter
from typing import Any
from urllib.parse import unquote

from fgclip.data.errors import WARNING, EntryProblem
from fgclip.data.formats.cliplist import finite_number, shown
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
        entry = task_converter.entry() if index not in conversion.off_grid else None
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
    """The annotation fps: from the keyframes' own frame/time, checked against an explicit value.

    A few keyframes off the grid most keyframes agree on are errors of their own tasks (a mistyped time),
    which leaves those tasks out; no majority grid at all is an error of the file (mixed labeling configs)."""
    rates = list(_keyframe_rates(tasks))
    if not rates:
        if given is None:
            conversion.problems.append(
                EntryProblem(source, None, None, "time", "no keyframe has a `time`: give the annotation fps")
            )
        return given
    low = Counter(rate for rate, *_ in rates).most_common(1)[0][0]
    off = [(rate, *where) for rate, *where in rates if abs(rate - low) / low > _FPS_TOLERANCE]
    if len(off) * 2 >= len(rates):
        high = max(rate for rate, *_ in rates)
        low = min(rate for rate, *_ in rates)
        conversion.problems.append(
            EntryProblem(
                source, None, None, "time",
                f"keyframes disagree on the frame rate (frame/time from {low:g} to {high:g} fps): mixed labeling "
                "configs? Export them separately",
            )
        )  # fmt: skip
        return given
    for rate, index, task, field_name in off:
        conversion.off_grid.add(index)
        conversion.problems.append(
            EntryProblem(
                source, None, None, field_name,
                f"frame/time is {rate:g} fps, off the {low:g}-fps grid of the export's other keyframes "
                "(a mistyped time or frame?)", origin=_origin(index, task),
            )
        )  # fmt: skip
    if given is not None and abs(given - low) / low > _FPS_TOLERANCE:
        conversion.problems.append(
            EntryProblem(
                source, None, None, "time",
                f"the export's keyframes are on a {low:g}-fps grid (frame/time) but {given:g} was asked for",
            )
        )  # fmt: skip
    return float(round(low, 3))


def _items(container: Any, key: str) -> list:
    """`container[key]` when the container is an object and that is a list; [] otherwise (reported elsewhere)."""
    value = container.get(key) if isinstance(container, dict) else None
    return value if isinstance(value, list) else []


def _keyframe_rates(tasks: list):
    """(frame / time, task index, task, field) of every keyframe whose frame and time place it on a grid."""
    for index, task in enumerate(tasks):
        for annotation in _items(task, "annotations"):
            for r, result in enumerate(_items(annotation, "result")):
                value = result.get("value") if isinstance(result, dict) else None
                for k, kf in enumerate(_items(value, "sequence")):
                    frame = finite_number(kf.get("frame")) if isinstance(kf, dict) else None
                    time = finite_number(kf.get("time")) if isinstance(kf, dict) else None
                    if (
                        frame is not None
                        and time is not None
                        and frame >= 1
                        and time > 0
                        and frame / time > 0
                    ):
                        yield round(frame / time, 6), index, task, f"result[{r}].value.sequence[{k}].time"


def _origin(index: int, task: Any) -> str:
    return f"task {task.get('id') if isinstance(task, dict) else '?'} (#{index} in the export)"


class _Task:
    def __init__(self, source, index, task, open_track_end, caption_field, video_field, conversion):
        self.source, self.index, self.task, self.conversion = source, index, task, conversion
        self.open_track_end, self.caption_field, self.video_field = open_track_end, caption_field, video_field
        # Problems name the task (its id and position in the export); entry indices count converted entries.
        self.origin = _origin(index, task)
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
        annotations = self.task.get("annotations")
        if not isinstance(annotations, list):
            self.problem("annotations", f"must be a list of annotations, got {shown(annotations)}")
            return None
        done = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
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
        if not isinstance(results, list):
            self.problem("result", f"must be a list of results, got {shown(results)}")
            return []
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
                f"{where}.frame",
                f"must be a frame number >= 1 (Label Studio counts from 1), got {shown(frame)}",
            )
            return None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            self.problem(where, f"x, y, width, height must be numbers, got {shown(numbers)}")
            return None
        if any(finite_number(v) is None for v in numbers):
            self.problem(where, f"x, y, width, height must be finite, got {shown(numbers)}")
            return None
        time = kf.get("time")  # optional; when given, the instant the annotator saw
        if time is not None and finite_number(time) is None:
            self.problem(f"{where}.time", f"must be finite seconds, got {shown(time)}")
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
