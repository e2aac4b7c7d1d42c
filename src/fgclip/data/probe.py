"""Probe every video a run reads, once, before anything trains on it: the checks of `fgclip data check`.

`probe_media` opens each distinct video (header only: it opens, has a video stream with a frame size, a time
base, a duration and a rate; `probe_video`) or image in a thread pool — opening and header parsing are FFmpeg
calls that release the GIL — and, with `scan=True`, also reads every packet without decoding it
(`scan_packets`: a faststart mp4 cut short or garbage mid-file, which the header cannot show). `clip_problems`
turns the results into `EntryProblem`s naming manifest, entry, video and field; `fgclip data check` and the
start-up probe of `fgclip train` / `fgclip eval` both report through it, so the two use the same wording and
the same error / warning classes:

- error: the video is missing or unreadable; a keyframe, or a span start, lies past the video's end (a wrong
  annotation grid, or the wrong video); with `--scan`, fewer packets than the header promises;
- warning: a span end past the video's end (the span is clamped to it); every track of a manifest ending in
  the first half of its video (`grid_problems`: annotations read on too fine a grid, which stay inside the
  video and so pass the error checks).

Results are kept in a small JSON index (`ProbeIndex`) keyed by (resolved path, size, mtime_ns), so a second
run reopens only videos that changed. Its default place is `$FGCLIP_CACHE_DIR/video_probe.json`, else
`~/.cache/fgclip/video_probe.json`. A scan's finding is kept with the header: once `data check --scan` has
found a file short, every later probe of that unchanged file (training's included) reports it too.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from fgclip.data.errors import WARNING, EntryProblem
from fgclip.data.formats import ManifestRead
from fgclip.data.records import Clip
from fgclip.data.video import VideoError, VideoInfo, probe_video, read_header, scan_packets

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "FGCLIP_CACHE_DIR"
INDEX_FILE = "video_probe.json"
INDEX_VERSION = 1
LATE_KEYFRAME_S = 0.1  # a couple of annotation frames of slack for rounding
LATE_SPAN_END_S = 1.0


def default_index_path() -> Path:
    root = os.environ.get(CACHE_DIR_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "fgclip") / INDEX_FILE


@dataclass(frozen=True)
class MediaProbe:
    """What one video or image gave: its header (None for images and unreadable files), or why it failed."""

    path: Path
    info: VideoInfo | None
    error: str | None = None  # the file is missing or cannot be used at all
    scan_problem: str | None = None  # `scan=True`: packets missing or malformed (the header promises more)

    @property
    def duration_s(self) -> float:
        return self.info.duration_s if self.info is not None else 0.0


class ProbeIndex:
    """Probe results on disk: {"version", "entries": {"<resolved path>|<size>|<mtime_ns>": {...}}}.

    A file whose size or modification time changed has another key, so it is probed again; stale keys are
    dropped when the index is saved. A missing, unreadable or foreign index is started afresh (it is a cache).
    """

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, dict] = self._read() if self.path is not None else {}
        self.used: set[str] = set()
        self.changed = False

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as error:
            logger.warning("probe index %s cannot be read (%s): probing every video again", self.path, error)
            return {}
        if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
            return {}
        entries = data.get("entries")
        return entries if isinstance(entries, dict) else {}

    @staticmethod
    def key(path: Path) -> str | None:
        try:
            st = path.stat()
        except OSError:
            return None  # missing: never indexed, probed (and reported) every time
        return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def get(self, key: str | None) -> dict | None:
        """The entry of `key`; a malformed one (hand-edited, another tool's) is named once and probed again."""
        if key is None:
            return None
        self.used.add(key)
        entry = self.entries.get(key)
        problem = entry_problem(entry) if entry is not None else None
        if problem is not None:
            logger.warning("probe index %s: entry %r %s: probing that video again", self.path, key, problem)
            del self.entries[key]
            self.changed = True
            return None
        return entry

    def put(self, key: str | None, entry: dict) -> None:
        if key is not None:
            self.entries[key] = entry
            self.used.add(key)
            self.changed = True

    def save(self) -> None:
        """Write atomically (a temporary file renamed over the index), keeping only the entries used now
        and the entries of files that still exist unchanged."""
        if self.path is None or not self.changed:
            return
        live = {k: v for k, v in self.entries.items() if k in self.used or _still_there(k)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            with os.fdopen(handle, "w") as out:
                json.dump({"version": INDEX_VERSION, "entries": live}, out)
            os.replace(temporary, self.path)
        except OSError as error:  # a cache: a read-only or full disk costs the next run a probe, nothing more
            logger.warning("probe index %s cannot be written (%s): the next run probes every video again",
                           self.path, error)  # fmt: skip
        self.changed = False


def _still_there(key: str) -> bool:
    path, _, _ = key.rpartition("|")[0].rpartition("|")
    return ProbeIndex.key(Path(path)) == key


def probe_media(
    paths: Iterable[Path],
    *,
    images: Iterable[Path] = (),
    index: ProbeIndex | None = None,
    workers: int = 8,
    scan: bool = False,
) -> dict[Path, MediaProbe]:
    """Probe each distinct video of `paths` (and image of `images`) once, `workers` at a time."""
    index = index if index is not None else ProbeIndex(None)
    image_set = set(images)
    todo = list(dict.fromkeys([*paths, *image_set]))
    keys = {path: ProbeIndex.key(path) for path in todo}
    results: dict[Path, MediaProbe] = {}
    missing = []
    for path in todo:
        entry = index.get(keys[path])
        cached = _from_entry(path, entry, scan) if entry is not None else None
        if cached is not None:
            results[path] = cached
        else:
            missing.append(path)
    if missing:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(missing)))) as pool:
            fresh = pool.map(lambda p: _probe_one(p, p in image_set, scan), missing)
            for path, (probe, entry) in zip(missing, fresh, strict=True):
                results[path] = probe
                if entry is not None:
                    index.put(keys[path], entry)
    index.save()
    return results


def _from_entry(path: Path, entry: dict, scan: bool) -> MediaProbe | None:
    """The indexed result, or None when it lacks what is asked (a scan not run yet) or is malformed."""
    if scan and "scan_problem" not in entry and entry.get("error") is None:
        return None
    try:
        info = VideoInfo(path=path, **entry["info"]) if entry.get("info") is not None else None
        return MediaProbe(path, info, entry.get("error"), entry.get("scan_problem"))
    except (KeyError, TypeError):
        return None


def _probe_one(path: Path, is_image: bool, scan: bool) -> tuple[MediaProbe, dict | None]:
    """(the result, its index entry); a missing file is not indexed (it has no size or mtime)."""
    if not path.exists():
        return MediaProbe(path, None, "file not found"), None
    try:
        info = _open_image(path) if is_image else probe_video(path)
        problem = scan_problem(path, info) if scan and info is not None else None
    except (VideoError, OSError) as error:
        message = _without_path(str(error), path)
        return MediaProbe(path, None, message), {"info": None, "error": message}
    entry = {"info": _info_fields(info) if info is not None else None, "error": None}
    if scan:
        entry["scan_problem"] = problem
    return MediaProbe(path, info, None, problem), entry


def _open_image(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except UnidentifiedImageError as error:
        raise VideoError(f"cannot be read as an image ({error})") from error


_INFO_TYPES = {"duration_s": (int, float), "fps": (int, float), "num_frames": int, "num_frames_exact": bool,
               "width": int, "height": int}  # fmt: skip


def entry_problem(entry) -> str | None:
    """What is wrong with an index entry ({"info": {...} | null, "error": str | null, "scan_problem"?}), or None."""
    if not isinstance(entry, dict):
        return f"is a {type(entry).__name__}, not an object"
    info, error = entry.get("info"), entry.get("error")
    if error is not None and not isinstance(error, str):
        return f"has an error of type {type(error).__name__}"
    if not isinstance(entry.get("scan_problem", ""), (str, type(None))):
        return "has a scan_problem that is not text"
    if info is None:
        return None if error is not None else "has neither info nor error"
    if not isinstance(info, dict) or set(info) != set(_INFO_TYPES):
        return f"has info {str(info)[:60]!r}, not the fields {sorted(_INFO_TYPES)}"
    for name, kinds in _INFO_TYPES.items():
        value = info[name]
        if not isinstance(value, kinds) or (kinds is int and isinstance(value, bool)):
            return f"has info.{name} = {value!r}"
    return None


def _info_fields(info: VideoInfo) -> dict:
    fields = asdict(info)
    del fields["path"]
    return fields


def _without_path(message: str, path: Path) -> str:
    """VideoError messages start with the file; the problem names it already."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


# ------------------------------------------------------------------------------------ frames promised
def scan_problem(path: Path, info: VideoInfo | None = None) -> str | None:
    """Read every packet (no decoding): None when the file holds what its header promises, else what is short."""
    info = info if info is not None else probe_video(path)
    scan = scan_packets(path)
    promised = info.num_frames if info.num_frames_exact else None
    short = (
        scan.num_packets < promised
        if promised is not None
        else scan.duration_s < info.duration_s - max(2.0 / info.fps, 0.5)
    )
    if scan.problem is None and not short:
        return None
    header = f"{promised} frames" if promised is not None else f"{info.duration_s:.2f} s"
    found = f"only {scan.num_packets} frames (up to {scan.duration_s:.2f} s) can be read"
    cause = f": {scan.problem}" if scan.problem else ""
    return (
        f"the header promises {header} but {found}{cause} (truncated or corrupt file; re-encode or remove it)"
    )


def frame_shortfall(path: Path, frames_read: int) -> str | None:
    """A warning when a video yields fewer frames than its header says (None when it yields them all)."""
    header = read_header(path)
    if header.num_frames is None or frames_read >= header.num_frames:
        return None
    return (
        f"{path}: the header says {header.num_frames} frames but only {frames_read} can be read "
        "(truncated or corrupt file?); the frames after the cut are left out"
    )


# ---------------------------------------------------------------------------------------- clip checks
def locate(clip: Clip, manifests: Sequence[ManifestRead]) -> tuple[str, int]:
    """(manifest path, entry index) of a clip; sample ids are "<manifest name>:<entry index>"."""
    name, _, index = clip.sample_id.rpartition(":")
    path = next((m.path for m in manifests if Path(m.path).name == name), name)
    return path, int(index)


def problem(clip: Clip, manifests, field_name, message, severity="error") -> EntryProblem:
    path, index = locate(clip, manifests)
    return EntryProblem(path, index, clip.video_key, field_name, message, severity)


def clip_problems(
    clips: Sequence[Clip], manifests: Sequence[ManifestRead], probes: dict[Path, MediaProbe]
) -> list[EntryProblem]:
    """Per clip: its video or image unusable, its times against the video's duration and frame rate."""
    problems: list[EntryProblem] = []
    for clip in clips:
        probe_result = probes[clip.video]
        what = "image" if clip.is_image else "video"
        if probe_result.error is not None:
            problems.append(problem(clip, manifests, "video", f"{what} {clip.video}: {probe_result.error}"))
        elif probe_result.scan_problem is not None:
            problems.append(
                problem(clip, manifests, "video", f"{what} {clip.video}: {probe_result.scan_problem}")
            )
        elif not clip.is_image:
            problems += check_times(clip, probe_result.info, manifests)
    return problems + grid_problems(clips, manifests, probes)


GRID_MIN_TRACKS = 8  # with fewer, all of them ending early is not unusual enough to warn
GRID_EARLY_SHARE = 0.51  # a grid read twice too fine puts every keyframe in the first half


def grid_problems(
    clips: Sequence[Clip], manifests: Sequence[ManifestRead], probes: dict[Path, MediaProbe]
) -> list[EntryProblem]:
    """A warning per manifest whose tracks all end in the first half of their videos: what frame numbers
    read on a grid twice (or more) too fine look like (a 25 fps annotation read as 50 fps halves every time,
    so no keyframe lands past the end and `check_times` cannot see it). One early track is normal; eight or
    more, every one of them early, is not (under 1 in 250 if track ends were spread evenly)."""
    latest: dict[str, list[tuple[float, Clip]]] = {}
    for clip in clips:
        info = probes[clip.video].info if clip.video in probes else None
        times = [k.time_s for r in clip.regions if r.track for k in r.track.keyframes]
        if info is None or not times or not info.duration_s > 0:
            continue
        latest.setdefault(locate(clip, manifests)[0], []).append((max(times) / info.duration_s, clip))
    problems = []
    for path, shares in latest.items():
        share, clip = max(shares, key=lambda item: item[0])
        if len(shares) < GRID_MIN_TRACKS or share > GRID_EARLY_SHARE:
            continue
        grid = next((m.annotation_fps for m in manifests if m.path == path), None)
        read_on = f" (frame numbers read on a {grid:g} fps grid)" if grid else ""
        message = (
            f"the tracks of all {len(shares)} tracked entries end in the first {share:.0%} of their videos "
            f"(the latest: entry {locate(clip, manifests)[1]}){read_on}: annotations on a coarser grid than "
            "they are read on (e.g. 25 fps frame numbers read as 50 fps)? `fgclip data show --grid-check` "
            "draws both grids"
        )
        problems.append(EntryProblem(path, None, None, "keyframes", message, WARNING))
    return problems


def check_times(clip: Clip, info: VideoInfo, manifests: Sequence[ManifestRead]) -> list[EntryProblem]:
    """Keyframes and the span against the video's end: a keyframe or a span start past it is an error (a wrong
    annotation grid, or the wrong video); a span end past it is clamped (warning)."""
    problems = []
    duration = info.duration_s
    for r, region in enumerate(clip.regions):
        times = [k.time_s for k in region.track.keyframes] if region.track else []
        if times and max(times) > duration + LATE_KEYFRAME_S:
            problems.append(
                problem(
                    clip, manifests, f"region {r} keyframes",
                    f"a keyframe at {max(times):.2f} s lies past the video's end ({duration:.2f} s): wrong "
                    f"annotation_fps{_grids(clip, info, manifests)}, or the wrong video?",
                )
            )  # fmt: skip
    if clip.timestamps is not None:
        start, end = clip.timestamps
        if start >= duration:
            problems.append(
                problem(
                    clip,
                    manifests,
                    "timestamps",
                    f"span starts at {start:.2f} s, after the video's end ({duration:.2f} s)",
                )
            )
        elif end > duration + LATE_SPAN_END_S:
            problems.append(
                problem(
                    clip, manifests, "timestamps",
                    f"span ends at {end:.2f} s, {end - duration:.2f} s past the video's end: clamped", WARNING,
                )
            )  # fmt: skip
    return problems


def _grids(clip: Clip, info: VideoInfo, manifests: Sequence[ManifestRead]) -> str:
    """' (keyframes read on a 25 fps grid; the video is 50 fps)' where the two differ."""
    name = clip.sample_id.rpartition(":")[0]
    grid = next((m.annotation_fps for m in manifests if Path(m.path).name == name), None)
    if grid is None or abs(grid - info.fps) < 0.01:
        return ""
    return f" (keyframes read on a {grid:g} fps grid; the video is {info.fps:.3g} fps)"
