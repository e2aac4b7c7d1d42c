"""Clip-list manifests (DESIGN §7.1, fgclip-vad / VAGTA) and hard-negative files (§7.2) -> `Clip` records.

A clip list is a JSON list of entries, or an object `{"annotation_fps": 30, "clips": [...]}` that also says on
which frame grid its keyframes live (see "Annotation grid" below). Optional entry fields beyond §7.1: `label`
("normal"/"abnormal"; default: abnormal iff it has box tracks), `region_labels` (one "normal"/"abnormal" per
region caption; default: every region has the clip's label -- an abnormal clip whose calm objects carry their
own boxed regions names them "normal", a normal clip's regions are all normal) and `group` (a scene or camera id;
`data.batch_by_group` puts clips of one group in the same batch, so the global loss sees a normal and an
abnormal clip of the same scene side by side).

Annotation grid: keyframe `frame` numbers live on a grid of `annotation_fps` frames per second (25 for
VAGTA-style files and for Label Studio exports) and are converted to seconds here (`time = frame / fps`);
nothing downstream sees annotation frames. The grid of a file is, in order: the file's own `annotation_fps`
(object form), else a per-manifest setting (`data.manifest_annotation_fps`, `--annotation-fps` of the data
commands), else `ReadOptions.annotation_fps` (default 25). A per-manifest setting that contradicts the file's own
is an error.

Numbers: every box coordinate, timestamp and keyframe frame must be finite (JSON `NaN` / `Infinity`, which
Python's reader accepts, are errors). A frame is an integer in [0, MAX_FRAME]; a float with an integral value
(`12.0`, as some exporters write integers) is read as that integer, any other float (`3.5`) is an error, and
so is a frame past MAX_FRAME = 2**31 - 1 (`1e12`: no video has that many frames; a corrupted value).

How the real files' quirks are read (each one is reported, never silently):
- coordinates outside [0, 1] by less than `box_tolerance` (float error) are clipped; farther out, or x1 >= x2,
  is an error naming the entry and keyframe;
- a normal clip without `timestamps` spans the whole video (warning when its label was inferred, since an
  abnormal clip that lost its tracks looks the same);
- an empty track (`[]`) of an abnormal clip carries no box: when the counts of non-empty tracks and captions
  then agree, the empty tracks are removed and the rest paired in order; an empty track paired with a caption
  leaves that region out (warning); any other caption/track count mismatch is an error (which track belongs to
  which caption cannot be known).

Entries with errors fail the whole file unless `ReadOptions.invalid_entries == "skip"`, which leaves them out and
lists them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fgclip.data.errors import WARNING, EntryProblem, ManifestError
from fgclip.data.records import ABNORMAL, NORMAL, Box, Clip, Keyframe, Region, Track
from fgclip.data.text import drop_positive_captions, normalize_caption

INVALID_ENTRY_POLICIES = ("error", "skip")
MAX_FRAME = 2**31 - 1  # 2.7 years of video at 25 fps


@dataclass(frozen=True)
class ReadOptions:
    annotation_fps: float = 25.0  # the grid of files that do not declare their own
    box_tolerance: float = 0.02  # coordinates outside [0,1] by less than this are clipped (float error)
    invalid_entries: str = "error"  # "error": a bad entry fails the file; "skip": left out and listed
    image_caption_field: str = "caption"  # format 6: "caption" (long) or "short_caption"


DEFAULT_READ_OPTIONS = ReadOptions()


@dataclass(frozen=True)
class HardNegativeItem:
    negatives: tuple[str, ...]
    region_caption: str | None  # the caption the negatives were written for, when the file says
    file: str
    item_index: int


HardNegatives = dict[tuple[str, int], HardNegativeItem]


@dataclass
class ManifestRead:
    """Everything reading one annotation file produced: the clips, and every problem found on the way."""

    path: str
    format: str
    num_entries: int
    annotation_fps: float | None
    clips: list[Clip] = field(default_factory=list)
    problems: list[EntryProblem] = field(default_factory=list)
    boxes_clipped: int = 0  # coordinates clipped into [0, 1] (within the tolerance)
    hard_negatives_dropped: int = 0  # negatives equal to their region's own caption (by caption key)
    hard_negatives_used: set[tuple[str, int]] = field(default_factory=set)

    @property
    def errors(self) -> list[EntryProblem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[EntryProblem]:
        return [p for p in self.problems if not p.is_error]

    @property
    def skipped_entries(self) -> list[int]:
        return sorted({p.index for p in self.errors if p.index is not None})

    def check(self, policy: str) -> ManifestRead:
        """Raise for errors unless the policy is "skip" (the erroneous entries are then already left out)."""
        if policy not in INVALID_ENTRY_POLICIES:
            raise ValueError(f"invalid_entries must be one of {INVALID_ENTRY_POLICIES}, got {policy!r}")
        if self.errors and policy == "error":
            raise ManifestError(
                self.errors,
                hint=(
                    f"{self.path}: {len(self.errors)} error(s) in {self.num_entries} entries. "
                    "Fix them, or leave them out explicitly with data.invalid_entries: skip "
                    "(data commands: --skip-invalid); `fgclip data check` lists everything."
                ),
            )
        return self


def load_json(path: str | Path) -> Any:
    """A JSON document; `.jsonl` files are read as a list of one object per line.

    Damage to the whole file is one problem naming it: bytes that are not UTF-8, nesting deeper than Python's
    recursion allows, an integer longer than Python's int-string limit (4300 digits), invalid JSON."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
        if text.startswith("\ufeff"):
            raise _file_error(
                str(path), None, "starts with a UTF-8 byte-order mark: save it as UTF-8 without BOM"
            )
        if path.suffix == ".jsonl":
            return [
                _parse(line, f"line {n}: ") for n, line in enumerate(text.splitlines(), 1) if line.strip()
            ]
        return _parse(text)
    except UnicodeDecodeError as error:
        where = f"byte {error.start}: {error.object[max(error.start - 20, 0) : error.start + 4]!r}"
        raise _file_error(str(path), None, f"not UTF-8 text ({where}); re-save it as UTF-8") from error
    except ValueError as error:
        raise _file_error(str(path), None, str(error)) from error


def _parse(text: str, where: str = "") -> Any:
    """json.loads, its failures as one-line messages (ValueError)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}not valid JSON: {error}") from error
    except RecursionError as error:
        raise ValueError(
            f"{where}nested too deeply to read (Python's recursion limit): a damaged file?"
        ) from error
    except ValueError as error:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise ValueError(f"{where}number too large ({error}): a damaged file?") from error


NAME_MAX = 255  # bytes in one path component on Linux, macOS and Windows file systems


def video_path_problem(video: str) -> str | None:
    """Why `video` cannot be a file path (the OS would refuse it with a traceback-shaped error), or None."""
    if "\x00" in video:
        return f"{shown(video)} holds a NUL byte, which no file path can"
    long = [part for part in Path(video).parts if len(part.encode("utf-8", "surrogatepass")) > NAME_MAX]
    if long:
        return f"the name {shown(long[0], 60)} is longer than {NAME_MAX} bytes, which no file system allows"
    return None


def finite_number(value: Any) -> float | None:
    """A JSON number as a finite float; None for a non-number, NaN, infinity or an integer too large for a
    float (JSON integers have no size limit; 10**400 is valid JSON)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def shown(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters: a 5000-digit number is not repeated in a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def read_clip_list(
    path: str | Path,
    resolve_video: Callable[[str], Path] | None = None,
    options: ReadOptions = ReadOptions(),
    hard_negatives: HardNegatives | None = None,
    annotation_fps: float | None = None,
) -> list[Clip]:
    """Read a clip-list manifest; every problem in the file is collected and raised together."""
    data = load_json(path)
    return (
        read_clip_document(data, str(path), resolve_video, options, hard_negatives, annotation_fps)
        .check(options.invalid_entries)
        .clips
    )


def read_clip_document(
    data: Any,
    source: str,
    resolve_video: Callable[[str], Path] | None = None,
    options: ReadOptions = ReadOptions(),
    hard_negatives: HardNegatives | None = None,
    annotation_fps: float | None = None,
) -> ManifestRead:
    """A parsed clip-list document (a list, or the `{"annotation_fps", "clips"}` object) -> ManifestRead."""
    declared = None
    if isinstance(data, dict) and "clips" in data:
        declared = data.get("annotation_fps")
        unknown = set(data) - {"clips", "annotation_fps"}
        if unknown:
            raise _file_error(
                source, None, f"unknown top-level keys {sorted(unknown)} (known: annotation_fps, clips)"
            )
        data = data["clips"]
    if not isinstance(data, list):
        raise _file_error(source, None, f"expected a JSON list of clips, got {type(data).__name__}")
    fps = _annotation_fps(source, declared, annotation_fps, options.annotation_fps)
    return read_clip_entries(data, source, resolve_video, options, hard_negatives, fps)


def read_clip_entries(
    entries: Sequence[Any],
    source: str,
    resolve_video: Callable[[str], Path] | None = None,
    options: ReadOptions = ReadOptions(),
    hard_negatives: HardNegatives | None = None,
    annotation_fps: float | None = None,
    origins: Sequence[str | None] | None = None,
    format: str = "cliplist",
) -> ManifestRead:
    """Read format-1 entries (already parsed, or converted from another format). Never raises for bad entries."""
    fps = annotation_fps if annotation_fps is not None else options.annotation_fps
    result = ManifestRead(path=source, format=format, num_entries=len(entries), annotation_fps=fps)
    for index, entry in enumerate(entries):
        origin = origins[index] if origins is not None else None
        reader = _EntryReader(source, index, entry, options, fps, origin)
        clip = reader.read(resolve_video or Path, hard_negatives or {})
        result.problems.extend(reader.problems)
        result.boxes_clipped += reader.boxes_clipped
        if clip is not None and not any(p.is_error for p in reader.problems):
            result.clips.append(clip)
            result.hard_negatives_used.update(reader.hard_negatives_used)
            result.hard_negatives_dropped += reader.hard_negatives_dropped
    return result


def _annotation_fps(source: str, declared: Any, override: float | None, default: float) -> float:
    if declared is not None:
        if (
            isinstance(declared, bool)
            or not isinstance(declared, (int, float))
            or not 0 < declared < math.inf
        ):
            raise _file_error(source, "annotation_fps", f"must be a positive finite number, got {declared!r}")
        if override is not None and abs(float(override) - float(declared)) > 1e-9:
            raise _file_error(
                source,
                "annotation_fps",
                f"the file declares {declared} fps but the manifest's setting says {override}; remove one",
            )
        return float(declared)
    fps = float(override) if override is not None else float(default)
    if not fps > 0:
        raise _file_error(source, "annotation_fps", f"must be positive, got {fps}")
    return fps


def _file_error(source: str, field_name: str | None, message: str) -> ManifestError:
    return ManifestError([EntryProblem(source, None, None, field_name, message)])


def read_hard_negatives(path: str | Path) -> HardNegatives:
    """Hard-negative file -> {(video, region_index): item}; duplicate keys are an error."""
    data = load_json(path)
    name = str(path)
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ManifestError(
            [EntryProblem(name, None, None, "items", "expected an object with an 'items' list")]
        )
    table: HardNegatives = {}
    problems = []
    for index, item in enumerate(items):
        video = item.get("video") if isinstance(item, dict) else None
        region = item.get("region_index") if isinstance(item, dict) else None
        negatives = item.get("hard_negative") if isinstance(item, dict) else None
        caption = item.get("region_caption") if isinstance(item, dict) else None
        if (
            not isinstance(video, str)
            or isinstance(region, bool)
            or not isinstance(region, int)
            or region < 0
        ):
            problems.append(
                EntryProblem(
                    name, index, video, "video/region_index", "needs a video string and region_index >= 0"
                )
            )
        elif not isinstance(negatives, list) or not all(isinstance(n, str) and n.strip() for n in negatives):
            problems.append(
                EntryProblem(name, index, video, "hard_negative", "must be a list of non-empty strings")
            )
        elif caption is not None and not isinstance(caption, str):
            problems.append(EntryProblem(name, index, video, "region_caption", "must be a string when given"))
        elif (video, region) in table:
            problems.append(
                EntryProblem(name, index, video, "region_index", f"duplicate item for region {region}")
            )
        else:
            table[(video, region)] = HardNegativeItem(
                tuple(n.strip() for n in negatives), caption, name, index
            )
    if problems:
        raise ManifestError(problems)
    return table


class _EntryReader:
    def __init__(
        self, file: str, index: int, entry: Any, options: ReadOptions, fps: float, origin: str | None
    ):
        self.file, self.index, self.entry, self.options, self.fps = file, index, entry, options, fps
        self.origin = origin
        self.video = entry.get("video") if isinstance(entry, dict) else None
        self.problems: list[EntryProblem] = []
        self.boxes_clipped = 0
        self.hard_negatives_dropped = 0
        self.hard_negatives_used: set[tuple[str, int]] = set()

    def problem(self, field_name: str | None, message: str, severity: str = "error") -> None:
        self.problems.append(
            EntryProblem(self.file, self.index, self.video, field_name, message, severity, self.origin)
        )

    def read(self, resolve_video, hard_negatives) -> Clip | None:
        if not isinstance(self.entry, dict):
            self.problem(None, f"expected an object, got {type(self.entry).__name__}")
            return None
        video, caption = self.entry.get("video"), self.entry.get("global_caption")
        if not isinstance(video, str) or not video.strip():
            self.problem("video", "missing or empty")
        elif video_path_problem(video):
            self.problem("video", video_path_problem(video))
        if not isinstance(caption, str) or not caption.strip():
            self.problem("global_caption", "missing or empty")
        captions = self._region_captions()
        tracks = self._tracks()
        timestamps = self._timestamps()
        if any(p.is_error for p in self.problems) or captions is None or tracks is None:
            return None
        label = self._label(tracks)
        region_labels = self._region_labels(len(captions), label)
        regions = self._regions(captions, tracks, label, region_labels, hard_negatives)
        group = self.entry.get("group")
        if group is not None and (not isinstance(group, str) or not group.strip()):
            self.problem("group", f"must be a non-empty string when given, got {group!r}")
        if label == NORMAL and timestamps is None and "label" not in self.entry:
            self.problem(
                "timestamps",
                "no box tracks and no time span: read as a normal clip over the whole video "
                "(give `label` to say so, or timestamps to place it)",
                WARNING,
            )
        if not regions and not any(p.is_error for p in self.problems):
            self.problem("region_captions", "no regions: only the global caption is trained on", WARNING)
        if any(p.is_error for p in self.problems):
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
        if not isinstance(captions, list):
            self.problem("region_captions", "must be a list of captions")
            return None
        for i, caption in enumerate(captions):
            if not isinstance(caption, str) or not caption.strip():
                self.problem(f"region_captions[{i}]", "empty caption")
        return [c.strip() if isinstance(c, str) else "" for c in captions]

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

    def _keyframe(self, field_name: str, keyframe: Any) -> Keyframe | None:
        if not isinstance(keyframe, dict):
            self.problem(field_name, "a keyframe must be an object {frame, bbox}")
            return None
        frame, message = parse_frame(keyframe.get("frame"))
        if message:
            self.problem(f"{field_name}.frame", message)
            return None
        bbox = keyframe.get("bbox")
        box = self._box(f"{field_name}.bbox", bbox)
        if box is None:
            return None
        enabled = keyframe.get("enabled", True)
        if not isinstance(enabled, bool):
            self.problem(f"{field_name}.enabled", f"must be true or false, got {enabled!r}")
        return Keyframe(float(frame) / self.fps, box, bool(enabled))

    def _box(self, field_name: str, bbox: Any) -> Box | None:
        box, message, clipped = parse_box(bbox, self.options.box_tolerance)
        if message:
            self.problem(field_name, message)
        self.boxes_clipped += clipped
        return box

    def _timestamps(self) -> tuple[float, float] | None:
        span = self.entry.get("timestamps")
        if span is None:
            return None
        if not (
            isinstance(span, list)
            and len(span) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in span)
        ):
            self.problem("timestamps", f"must be null or [start_s, end_s], got {shown(span)}")
            return None
        start, end = finite_number(span[0]), finite_number(span[1])
        if start is None or end is None:
            self.problem(
                "timestamps",
                f"non-finite value in {shown(span)} (needs finite seconds; NaN, infinity or too large)",
            )
            return None
        if not 0 <= start < end:
            self.problem("timestamps", f"needs 0 <= start < end, got {span!r}")
            return None
        return start, end

    def _label(self, tracks: list[Track | None]) -> int:
        label = self.entry.get("label")
        if label is None:
            return ABNORMAL if any(t is not None for t in tracks) else NORMAL
        names = {"normal": NORMAL, "abnormal": ABNORMAL, NORMAL: NORMAL, ABNORMAL: ABNORMAL}
        if isinstance(label, bool) or not isinstance(label, (str, int)) or label not in names:
            self.problem("label", f"must be 'normal', 'abnormal', 0 or 1, got {shown(label)}")
            return NORMAL
        return names[label]

    def _region_labels(self, count: int, label: int) -> list[int]:
        """Each region's label: `region_labels` when given (checked against the clip's), else the clip's."""
        given = self.entry.get("region_labels")
        if given is None:
            return [label] * count
        names = {"normal": NORMAL, "abnormal": ABNORMAL, NORMAL: NORMAL, ABNORMAL: ABNORMAL}
        if not isinstance(given, list) or len(given) != count:
            self.problem(
                "region_labels", f"must be a list of {count} labels (one per region caption), got {given!r}"
            )
            return [label] * count
        if any(isinstance(v, bool) or v not in names for v in given):
            self.problem("region_labels", f"each must be 'normal', 'abnormal', 0 or 1, got {given!r}")
            return [label] * count
        labels = [names[v] for v in given]
        if label == NORMAL and ABNORMAL in labels:
            self.problem("region_labels", "a normal clip cannot hold an abnormal region")
        if label == ABNORMAL and ABNORMAL not in labels:
            self.problem("region_labels", "an abnormal clip needs at least one abnormal region")
        return labels

    def _regions(self, captions, tracks, label, region_labels, hard_negatives) -> list[Region]:
        pairs = self._pair(captions, tracks, label)
        regions = []
        for i, track in pairs:
            if track is None and label == ABNORMAL:
                self.problem(f"box_infos[{i}]", f"region {i} has no keyframes: left out of the clip", WARNING)
                continue
            negatives = self._hard_negatives(i, captions[i], hard_negatives)
            regions.append(Region(captions[i], track, region_labels[i], negatives))
        return regions

    def _pair(self, captions, tracks, label) -> list[tuple[int, Track | None]]:
        """(caption index, track) pairs; see the module docstring for how empty tracks are read."""
        present = [t for t in tracks if t is not None]
        if not present and label == NORMAL:
            return [(i, None) for i in range(len(captions))]  # the region of a normal clip is the full frame
        if len(tracks) == len(captions):
            return list(enumerate(tracks))
        if len(present) == len(captions):
            empty = [i for i, t in enumerate(tracks) if t is None]
            self.problem(
                "box_infos",
                f"{len(tracks)} tracks for {len(captions)} region captions: the empty track(s) {empty} were "
                "removed and the others paired with the captions in order",
                WARNING,
            )
            return list(enumerate(present))
        self.problem(
            "box_infos",
            f"{len(tracks)} tracks ({len(present)} with keyframes) for {len(captions)} region captions: "
            "which track belongs to which caption is unknown",
        )
        return []

    def _hard_negatives(self, i: int, caption: str, hard_negatives: HardNegatives) -> tuple[str, ...]:
        item = hard_negatives.get((self.video, i))
        if item is None:
            return ()
        if item.region_caption is not None and normalize_caption(item.region_caption) != normalize_caption(
            caption
        ):
            self.problem(
                f"region_captions[{i}]",
                f"the hard negatives of {item.file} item {item.item_index} were written for the caption "
                f"{item.region_caption!r}, not for this region's {caption!r} (stale or misjoined file)",
            )
            return ()
        self.hard_negatives_used.add((self.video, i))
        negatives, dropped = drop_positive_captions(item.negatives, caption)
        if dropped:
            self.hard_negatives_dropped += dropped
            self.problem(
                f"region_captions[{i}]",
                f"{dropped} hard negative(s) from {item.file} item {item.item_index} equal this region's own "
                f"caption {caption!r}: dropped (a negative identical to the positive is not a negative)",
                WARNING,
            )
        return negatives


def parse_frame(frame: Any) -> tuple[int | None, str | None]:
    """A keyframe's frame number -> (the integer, None) or (None, error message); see the module docstring."""
    if isinstance(frame, bool) or not isinstance(frame, (int, float)):
        return None, f"must be a frame number >= 0, got {shown(frame)}"
    if isinstance(frame, float):
        if not math.isfinite(frame):
            return None, f"non-finite frame number {frame!r}"
        if not frame.is_integer():
            return None, f"must be an integer frame number, got {frame!r}"
    if frame < 0:
        return None, f"must be a frame number >= 0, got {shown(frame)}"
    if frame > MAX_FRAME:
        return None, f"frame {shown(frame)} is past the largest frame number {MAX_FRAME}: a corrupted value?"
    return int(frame), None


def parse_box(bbox: Any, tolerance: float) -> tuple[Box | None, str | None, int]:
    """[x1, y1, x2, y2] -> (box clipped into [0, 1], error message, number of coordinates clipped)."""
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    ):
        return None, f"must be [x1, y1, x2, y2] numbers, got {shown(bbox)}", 0
    values = [finite_number(v) for v in bbox]
    if any(v is None for v in values):
        return None, f"non-finite coordinate in {shown(bbox)} (NaN, infinity or too large for a float)", 0
    if any(v < -tolerance or v > 1 + tolerance for v in values):
        return None, f"{bbox} lies outside [0, 1] by more than the tolerance {tolerance}", 0
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in values)
    if x1 >= x2 or y1 >= y2:
        return None, f"empty or inverted box {bbox} (needs x1 < x2 and y1 < y2)", 0
    return (x1, y1, x2, y2), None, sum(1 for v in values if v < 0 or v > 1)
