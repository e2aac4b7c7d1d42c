"""Legacy normal-clip dict (DESIGN §7.3) -> clip-list entries (format 1).

    {video_file: {clip_id: {"timestamps": [[start_s, end_s]], "global": {"Caption": str},
                            "region": [{"caption": str}, ...]}}}

Each clip becomes one normal entry (its regions are full-frame, `box_infos: [[]]`, `label: "normal"`), with
`video = video_prefix + video_file` (the dict holds bare file names; `--video-prefix` or the usual
`video_root`/`path_remaps` place them). How the real file's quirks are read:

- placeholder spans (`[[0, 0]]`, `[[0.0, 0]]`, `[]`: no span was ever measured): when every clip of a video
  is a placeholder, the video becomes ONE clip over the whole video (`timestamps: null`) per distinct caption
  set — they are copies of one caption, so nothing is lost; when some sibling clips do have spans, the
  placeholder clips are left out (their part of the video is unknown). Both are warnings;
- an inverted span (start > end) is an error: the clip is left out, or the file refused (policy);
- a flat entry (`{clip_id: {timestamps, global, region}}` at the top level) takes its video from the clip id
  by the dict's own naming rule `<video stem>_<k>.<ext>` (warning);
- several spans in one clip give one entry per span.

A dict whose entries carry no `timestamps` at all is a caption-only dict: nothing places its captions in time
or space, so it is refused as a whole with a report of everything wrong in it (`caption_only_problems`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from fgclip.data.errors import WARNING, EntryProblem, ManifestError
from fgclip.data.formats.cliplist import finite_number, shown
from fgclip.data.formats.conversion import Conversion

_FLAT_CLIP_ID = re.compile(r"(?P<stem>.+)_(?P<k>\d+)(?P<ext>\.[A-Za-z0-9]+)")
_CLIP_KEYS = {"timestamps", "global", "region"}
MARKER_CAPTIONS = {"normal", "abnormal", "repeat", "none", "null", "n/a", "na", "-", "todo"}


def is_normal_dict(data: Any) -> bool:
    """A dict of videos whose values are clips or dicts of clips (`global`/`region` keys somewhere)."""
    if not isinstance(data, dict) or not data:
        return False
    value = next(iter(data.values()))
    if not isinstance(value, dict):
        return False
    if _CLIP_KEYS & set(value):
        return True
    inner = next(iter(value.values()), None)
    return isinstance(inner, dict) and bool(_CLIP_KEYS & set(inner))


def convert_normal_dict(data: Any, source: str, video_prefix: str = "") -> Conversion:
    """The dict -> format-1 entries (never raises for a bad clip; a caption-only dict raises ManifestError)."""
    if not isinstance(data, dict):
        raise ManifestError(
            [EntryProblem(source, None, None, None, "expected a JSON object {video: {clip: ...}}")]
        )
    if not any(_has_timestamps(value) for value in data.values()):
        raise ManifestError(caption_only_problems(data, source))
    conversion = Conversion(source=source, format="normal_dict", num_source_entries=len(data))
    for video_file, clips in _videos(data, source, conversion):
        _convert_video(video_file, clips, video_prefix, conversion)
    return conversion


def _has_timestamps(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    return "timestamps" in value or any(isinstance(c, dict) and "timestamps" in c for c in value.values())


def _videos(data: dict, source: str, conversion: Conversion):
    """(video file, [(clip id, clip)]) in file order; flat entries join the video their clip id names."""
    videos: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for key, value in data.items():
        if isinstance(value, dict) and _CLIP_KEYS & set(value):
            match = _FLAT_CLIP_ID.fullmatch(key)
            video = match["stem"] + match["ext"] if match else key
            conversion.problems.append(
                EntryProblem(
                    source, None, video, key,
                    f"flat entry: clip {key!r} is read as a clip of video {video!r} (from its id)", WARNING,
                )
            )  # fmt: skip
            videos[video].append((key, value))
        elif isinstance(value, dict):
            videos[key].extend(value.items())
        else:
            conversion.problems.append(
                EntryProblem(
                    source, None, key, None, f"expected an object of clips, got {type(value).__name__}"
                )
            )
    return videos.items()


def _convert_video(
    video_file: str, clips: list[tuple[str, Any]], prefix: str, conversion: Conversion
) -> None:
    parsed = [(clip_id, _parse_clip(video_file, clip_id, clip, conversion)) for clip_id, clip in clips]
    parsed = [(clip_id, p) for clip_id, p in parsed if p is not None]
    timed = [(clip_id, p) for clip_id, p in parsed if p["spans"]]
    placeholders = [(clip_id, p) for clip_id, p in parsed if not p["spans"]]
    for clip_id, p in timed:
        for start, end in p["spans"]:
            conversion.add(_entry(prefix + video_file, p, [start, end]), f"clip {clip_id!r}")
    if not placeholders:
        return
    ids = [clip_id for clip_id, _ in placeholders]
    if timed:
        conversion.problems.append(
            EntryProblem(
                conversion.source, None, video_file, "timestamps",
                f"placeholder span in clip(s) {ids} while sibling clips have spans: left out (part unknown)",
                WARNING,
            )
        )  # fmt: skip
        return
    distinct: dict[tuple, dict] = {}
    for _, p in placeholders:
        distinct.setdefault((p["global"], tuple(p["regions"])), p)
    conversion.problems.append(
        EntryProblem(
            conversion.source, None, video_file, "timestamps",
            f"every clip {ids} has a placeholder span: read as {len(distinct)} clip(s) over the whole video",
            WARNING,
        )
    )  # fmt: skip
    for p in distinct.values():
        conversion.add(_entry(prefix + video_file, p, None), f"clips {ids}")


def _entry(video: str, parsed: dict, span: list[float] | None) -> dict:
    return {
        "video": video,
        "global_caption": parsed["global"],
        "region_captions": parsed["regions"],
        "box_infos": [[]],
        "timestamps": span,
        "label": "normal",
    }


def _parse_clip(video_file: str, clip_id: str, clip: Any, conversion: Conversion) -> dict | None:
    """{global, regions, spans} of one clip, or None (problems recorded). Empty `spans`: a placeholder."""
    before = len(conversion.errors)

    def error(field_name: str, message: str) -> None:
        conversion.problems.append(
            EntryProblem(conversion.source, None, video_file, f"{clip_id}.{field_name}", message)
        )

    if not isinstance(clip, dict):
        error("", f"expected an object, got {type(clip).__name__}")
        return None
    caption = clip.get("global", {}).get("Caption") if isinstance(clip.get("global"), dict) else None
    if not isinstance(caption, str) or not caption.strip():
        error("global.Caption", "missing or empty")
    regions = []
    raw_regions = clip.get("region")
    if not isinstance(raw_regions, list) or not raw_regions:
        error("region", "must be a non-empty list of {caption}")
        raw_regions = []
    for i, region in enumerate(raw_regions):
        text = region.get("caption") if isinstance(region, dict) else None
        if isinstance(region, str):
            error(f"region[{i}]", f'bare string {region!r}, expected {{"caption": ...}}')
        elif not isinstance(text, str) or not text.strip():
            error(f"region[{i}].caption", "missing or empty")
        else:
            regions.append(text.strip())
    spans = _spans(clip.get("timestamps"), error)
    if len(conversion.errors) > before or spans is None:
        return None
    return {"global": caption.strip(), "regions": regions, "spans": spans}


def _spans(raw: Any, error) -> list[tuple[float, float]] | None:
    """Measured spans; [] for a placeholder (no span, or only zero-length ones); None on error."""
    if not isinstance(raw, list):
        error("timestamps", f"must be a list of [start_s, end_s], got {raw!r}")
        return None
    spans = []
    for k, pair in enumerate(raw):
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
        ):
            error(f"timestamps[{k}]", f"must be [start_s, end_s], got {pair!r}")
            return None
        start, end = finite_number(pair[0]), finite_number(pair[1])
        if start is None or end is None:
            error(
                f"timestamps[{k}]",
                f"non-finite value in {shown(pair)} (needs finite seconds; NaN, infinity or too large)",
            )
            return None
        if start < 0 or start > end:
            error(f"timestamps[{k}]", f"inverted or negative span {pair!r} (needs 0 <= start < end)")
            return None
        if end > start:
            spans.append((start, end))
    return spans


def caption_only_problems(data: dict, source: str) -> list[EntryProblem]:
    """Everything that makes a caption-only dict unusable, counted, with the first entries of each kind."""
    kinds: dict[str, list[str]] = defaultdict(list)
    markers: Counter = Counter()
    for video, value in data.items():
        if not isinstance(value, dict):
            kinds["entries that are not objects"].append(video)
            continue
        caption = value.get("global", {}).get("Caption") if isinstance(value.get("global"), dict) else None
        if not isinstance(caption, str) or not caption.strip():
            kinds["empty global captions (global.Caption)"].append(video)
        elif caption.strip().lower() in MARKER_CAPTIONS:
            markers[caption.strip()] += 1
            kinds["marker words instead of captions"].append(video)
        regions = value.get("region")
        if not isinstance(regions, list) or not regions:
            kinds["entries without regions"].append(video)
            continue
        for region in regions:
            text = (
                region
                if isinstance(region, str)
                else region.get("caption")
                if isinstance(region, dict)
                else None
            )
            if isinstance(region, str):
                kinds['bare-string regions (expected {"caption": ...})'].append(video)
            if not isinstance(text, str) or not text.strip():
                kinds["empty region captions"].append(video)
            elif text.strip().lower() in MARKER_CAPTIONS:
                markers[text.strip()] += 1
                kinds["marker words instead of captions"].append(video)
    problems = [
        EntryProblem(
            source, None, None, "timestamps",
            f"caption-only dict: none of its {len(data)} entries has timestamps (or box tracks), so no caption "
            "can be placed in time or space; it cannot be read as clips (formats: DESIGN §7.1 clip list, §7.3 "
            "normal-clip dict)",
        )
    ]  # fmt: skip
    for kind, videos in kinds.items():
        unique = list(dict.fromkeys(videos))
        detail = (
            f" ({', '.join(f'{m!r} x{n}' for m, n in markers.most_common())})" if "marker" in kind else ""
        )
        problems.append(
            EntryProblem(
                source, None, None, None,
                f"{len(videos)} {kind}{detail} in {len(unique)} entries, e.g. {unique[:5]}",
            )
        )  # fmt: skip
    return problems
