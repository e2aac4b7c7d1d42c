"""Image records (DESIGN §7.6, FineHARD-like) -> one-frame `Clip` records (T = 1).

    {"f_path": str, "caption": str, "short_caption": str,
     "bbox_info": [{"bbox": [x1, y1, x2, y2(, score)], "short_expr": str, "long_expr": str,
                    "flag_short_neg": 0 | 1, "short_expr_negs": {key: str}}]}

Boxes are normalised to [0, 1] like the clip list's (same tolerance and errors); the optional fifth value (a
detector score) is dropped. A region's caption is `short_expr` (what FG-CLIP's region loss uses); its hard
negatives are the values of `short_expr_negs` when `flag_short_neg == 1`. The global caption is the record's
`ReadOptions.image_caption_field` ("caption" by default, the long one; "short_caption" for 77-token models
without long-text positions). An image is a clip of one frame at t = 0: each region becomes a single keyframe
at t = 0, visible on that frame. Records are normal (label 0) unless they carry `label`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fgclip.data.errors import WARNING, EntryProblem
from fgclip.data.formats.cliplist import (
    DEFAULT_READ_OPTIONS,
    ManifestRead,
    ReadOptions,
    parse_box,
    shown,
    video_path_problem,
)
from fgclip.data.records import ABNORMAL, IMAGE, NORMAL, Clip, Keyframe, Region, Track
from fgclip.data.text import drop_positive_captions


def is_image_records(data: Any) -> bool:
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "f_path" in data[0]


def read_image_records(
    records: list,
    source: str,
    resolve_path: Callable[[str], Path] | None = None,
    options: ReadOptions = DEFAULT_READ_OPTIONS,
) -> ManifestRead:
    result = ManifestRead(path=source, format="images", num_entries=len(records), annotation_fps=None)
    for index, record in enumerate(records):
        reader = _RecordReader(source, index, record, options)
        clip = reader.read(resolve_path or Path)
        result.problems.extend(reader.problems)
        result.boxes_clipped += reader.boxes_clipped
        if clip is not None:
            result.clips.append(clip)
            result.problems.extend(reader.warnings)
            result.hard_negatives_dropped += reader.hard_negatives_dropped
    return result


class _RecordReader:
    def __init__(self, source: str, index: int, record: Any, options: ReadOptions):
        self.source, self.index, self.record, self.options = source, index, record, options
        self.path = record.get("f_path") if isinstance(record, dict) else None
        self.problems: list[EntryProblem] = []
        self.warnings: list[EntryProblem] = []  # kept apart: any entry in `problems` refuses the record
        self.boxes_clipped = 0
        self.hard_negatives_dropped = 0

    def problem(self, field_name: str | None, message: str) -> None:
        self.problems.append(EntryProblem(self.source, self.index, self.path, field_name, message))

    def read(self, resolve_path) -> Clip | None:
        if not isinstance(self.record, dict):
            self.problem(None, f"expected an object, got {type(self.record).__name__}")
            return None
        if not isinstance(self.path, str) or not self.path.strip():
            self.problem("f_path", "missing or empty")
        elif video_path_problem(self.path):
            self.problem("f_path", video_path_problem(self.path))
        field_name = self.options.image_caption_field
        caption = self.record.get(field_name)
        if not isinstance(caption, str) or not caption.strip():
            self.problem(field_name, "missing or empty")
        raw_label = self.record.get("label")
        hashable = raw_label is None or isinstance(raw_label, (str, int)) and not isinstance(raw_label, bool)
        names = {None: NORMAL, "normal": NORMAL, "abnormal": ABNORMAL, 0: NORMAL, 1: ABNORMAL}
        label = names.get(raw_label, -1) if hashable else -1
        if label == -1:
            self.problem("label", f"must be 'normal', 'abnormal', 0 or 1, got {shown(raw_label)}")
        infos = self.record.get("bbox_info", [])
        if not isinstance(infos, list):
            self.problem("bbox_info", "must be a list of regions")
            infos = []
        regions = [self._region(i, info, label) for i, info in enumerate(infos)]
        if self.problems:
            return None
        return Clip(
            sample_id=f"{Path(self.source).name}:{self.index}",
            video=Path(resolve_path(self.path)),
            video_key=self.path,
            global_caption=caption.strip(),
            regions=tuple(r for r in regions if r is not None),
            label=label,
            media=IMAGE,
            extra={"short_caption": self.record.get("short_caption")},
        )

    def _region(self, i: int, info: Any, label: int) -> Region | None:
        where = f"bbox_info[{i}]"
        if not isinstance(info, dict):
            self.problem(where, "a region must be an object")
            return None
        bbox = info.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 5:
            bbox = bbox[:4]  # [x1, y1, x2, y2, score]
        box, message, clipped = parse_box(bbox, self.options.box_tolerance)
        self.boxes_clipped += clipped
        if message:
            self.problem(f"{where}.bbox", message)
        text = info.get("short_expr")
        if not isinstance(text, str) or not text.strip():
            self.problem(f"{where}.short_expr", "missing or empty")
        negatives: tuple[str, ...] = ()
        if info.get("flag_short_neg") == 1:
            raw = info.get("short_expr_negs")
            if not isinstance(raw, dict) or not all(isinstance(v, str) and v.strip() for v in raw.values()):
                self.problem(
                    f"{where}.short_expr_negs", "flag_short_neg is 1: needs an object of non-empty strings"
                )
            else:
                negatives = tuple(v.strip() for v in raw.values())
        if box is None or not isinstance(text, str) or not text.strip():
            return None
        negatives, dropped = drop_positive_captions(negatives, text)
        if dropped:
            self.hard_negatives_dropped += dropped
            self.warnings.append(
                EntryProblem(
                    self.source, self.index, self.path, f"{where}.short_expr_negs",
                    f"{dropped} negative(s) equal the region's own short_expr {text.strip()!r}: dropped",
                    WARNING,
                )
            )  # fmt: skip
        return Region(text.strip(), Track((Keyframe(0.0, box),)), label, negatives)
