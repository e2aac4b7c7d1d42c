"""Frame-level anomaly ground truth, snippet layout and AUC / AP, as the VAD literature computes them.

Protocol (Sultani et al. 2018, and RTFM / MIST / VadCLIP after them): a video of N native frames is cut into
snippets of `snippet_frames` (16) consecutive frames; each snippet gets one anomaly score, the score is
repeated over the snippet's frames, every test video's frame series is concatenated, and ROC-AUC and average
precision are computed against frame labels built from the temporal annotation file
(`sklearn.metrics.roc_auc_score`, `average_precision_score`).

Ground-truth convention (UCF-Crime `Temporal_Anomaly_Annotation_for_Testing_Videos.txt`, DESIGN §7.5)
-------------------------------------------------------------------------------------------------------
A line `Name  Class  s1  e1  s2  e2` marks native frames **s..e, 0-based, end inclusive**, as abnormal;
`-1 -1` means "no such segment". This is the rule of RTFM's `list/make_gt_ucf.py`
(github.com/tianyu0207/RTFM: `for i in range(start_idx, end_idx + 1): gt.append(1.0)` over 0-based frame
indices), and the synthetic benchmark writes its `test_annotation.txt` the same way (`fgclip.synthetic`:
"native frames s1..e1 show the event, e1 inclusive"). Other public code differs by one frame per segment
boundary: VadCLIP's `list/make_gt_ucf.py` (github.com/nwpu-zxr/VadCLIP) and MIST's `datasets/dataset.py`
(github.com/fjchange/MIST_VAD) set `gt[s:e] = 1` (end exclusive); the original MATLAB evaluation of Sultani
et al. sets `GT(s:e) = 1` with MATLAB's 1-based indexing (0-based frames s-1..e-1). Over UCF-Crime's
~1.1 M test frames these are 1-2 frames per segment and move AUC by far less than its reported precision.

Frame count and the last snippet: every native frame of the video is scored and labelled (N = the exact
number of frames in the file, from the packet index). The last snippet holds the remaining
`N - 16 (S - 1)` frames (1..16) and is scored on frames sampled inside itself, so scores and ground truth
both have length N for every video. RTFM / MIST / VadCLIP instead drop the frames of an incomplete last
snippet (their features exist only for whole 16-frame snippets); the original MATLAB evaluation keeps every
frame and extends the last score, like this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

NORMAL_CLASS = "Normal"


class AnnotationError(ValueError):
    """A temporal annotation file (or its match with the videos) is wrong; the message names file and line."""


@dataclass(frozen=True)
class TemporalAnnotation:
    name: str  # video name without extension, e.g. "Abuse028_x264"
    label: str  # class name; "Normal" for normal videos
    segments: tuple[tuple[int, int], ...]  # native frames, 0-based, end inclusive

    @property
    def is_abnormal(self) -> bool:
        return self.label.lower() != NORMAL_CLASS.lower()


def read_temporal_annotations(path: str | Path) -> dict[str, TemporalAnnotation]:
    """`Name  Class  s1  e1  s2  e2` per line (UCF-Crime format); `-1 -1` marks an absent segment."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"temporal annotation file not found: {path}")
    table: dict[str, TemporalAnnotation] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            annotation = _parse_annotation_line(line, f"{path}:{number}")
            if annotation.name in table:
                raise AnnotationError(f"{path}:{number}: video {annotation.name!r} is annotated twice")
            table[annotation.name] = annotation
    if not table:
        raise AnnotationError(f"{path}: no annotation lines")
    return table


def _parse_annotation_line(line: str, where: str) -> TemporalAnnotation:
    fields = line.split()
    if len(fields) != 6:
        raise AnnotationError(f"{where}: expected 'Name Class s1 e1 s2 e2', got {line.strip()!r}")
    name, label, *bounds = fields
    try:
        values = [int(v) for v in bounds]
    except ValueError:
        raise AnnotationError(f"{where}: frame numbers must be integers, got {bounds}") from None
    segments = []
    for start, end in zip(values[::2], values[1::2], strict=True):
        if start == -1 and end == -1:
            continue
        if start < 0 or end < 0:
            raise AnnotationError(f"{where}: segment ({start}, {end}) has one bound -1 (use -1 -1 for none)")
        if end < start:
            raise AnnotationError(f"{where}: segment end {end} before start {start}")
        segments.append((start, end))
    annotation = TemporalAnnotation(Path(name).stem, label, tuple(segments))
    if annotation.is_abnormal != bool(segments):
        state = "has no segment" if annotation.is_abnormal else f"is labelled {label!r} but has segments"
        raise AnnotationError(f"{where}: video {annotation.name} {state}")
    return annotation


def frame_ground_truth(num_frames: int, annotation: TemporalAnnotation) -> np.ndarray:
    """(N,) int8 frame labels: 1 on frames s..e (0-based, inclusive) of every segment (module docstring).

    A segment running past the last frame is cut there (annotations often end on the frame count); one that
    starts past it means the annotation belongs to another video (or another frame rate): an error.
    """
    truth = np.zeros(num_frames, dtype=np.int8)
    for start, end in annotation.segments:
        if start >= num_frames:
            raise AnnotationError(
                f"{annotation.name}: annotated segment ({start}, {end}) starts after the video's last frame "
                f"({num_frames - 1}); is this the right video, at its native frame rate?"
            )
        truth[start : min(end, num_frames - 1) + 1] = 1
    return truth


@dataclass(frozen=True)
class SnippetLayout:
    """How a video of `num_frames` native frames is cut into snippets and which frames each one samples."""

    num_frames: int
    snippet_frames: int  # defaults: fgclip.evaluation.snippet_options.SnippetOptions
    frames_per_snippet: int

    def __post_init__(self):
        if self.num_frames < 1:
            raise ValueError(f"a video needs at least one frame, got num_frames={self.num_frames}")
        if not 1 <= self.frames_per_snippet <= self.snippet_frames:
            raise ValueError(
                f"frames_per_snippet must be in [1, snippet_frames={self.snippet_frames}], "
                f"got {self.frames_per_snippet}"
            )

    @property
    def num_snippets(self) -> int:
        return math.ceil(self.num_frames / self.snippet_frames)

    @property
    def num_full_snippets(self) -> int:
        return self.num_frames // self.snippet_frames

    def bounds(self, snippet: int) -> tuple[int, int]:
        """First and one-past-last native frame of a snippet."""
        start = snippet * self.snippet_frames
        return start, min(start + self.snippet_frames, self.num_frames)

    def sample_frames(self, snippets: range | None = None) -> np.ndarray:
        """(S, F) native frame indices: F bin centres inside each snippet (the last one may be shorter)."""
        snippets = range(self.num_snippets) if snippets is None else snippets
        starts = np.array([self.bounds(s)[0] for s in snippets], dtype=np.int64)  # (S,)
        lengths = np.array([self.bounds(s)[1] - self.bounds(s)[0] for s in snippets], dtype=np.int64)  # (S,)
        offsets = (np.arange(self.frames_per_snippet) + 0.5) / self.frames_per_snippet  # (F,)
        return starts[:, None] + np.floor(offsets[None, :] * lengths[:, None]).astype(np.int64)  # (S, F)

    def repeat(self, snippet_values: np.ndarray) -> np.ndarray:
        """(S,) snippet values -> (N,) frame values, each repeated over its snippet's frames."""
        if len(snippet_values) != self.num_snippets:
            raise ValueError(f"expected {self.num_snippets} snippet values, got {len(snippet_values)}")
        return np.repeat(np.asarray(snippet_values), self.snippet_frames)[: self.num_frames]


def frame_level_metrics(
    scores: dict[str, np.ndarray], annotations: dict[str, TemporalAnnotation], frame_counts: dict[str, int]
) -> dict:
    """AUC and AP over all videos concatenated, over abnormal videos only, and per abnormal class.

    `scores` (video -> per-frame score) and the ground truth are built independently (the truth from
    `frame_counts`, the video's native frame count) and must have equal length for every video: the classic
    off-by-one-snippet bug fails here instead of shifting every later video's labels. Per class: the frames
    of that class's videos only (like "abnormal videos only", restricted to one class).
    """
    truth = frame_truths(scores, annotations, frame_counts)
    names = sorted(scores)
    abnormal = [n for n in names if annotations[n].is_abnormal]
    result = {
        "overall": _auc_ap(scores, truth, names),
        "abnormal_videos": _auc_ap(scores, truth, abnormal),
        "per_class": {
            label: _auc_ap(scores, truth, [n for n in abnormal if annotations[n].label == label])
            for label in sorted({annotations[n].label for n in abnormal})
        },
        "num_videos": {"total": len(names), "abnormal": len(abnormal)},
    }
    return result


def frame_truths(
    scores: dict[str, np.ndarray], annotations: dict[str, TemporalAnnotation], frame_counts: dict[str, int]
) -> dict[str, np.ndarray]:
    """Ground truth per scored video, checked against the scores' lengths."""
    missing = sorted(set(scores) - set(annotations))
    if missing:
        raise AnnotationError(
            f"no temporal annotation for {len(missing)} scored video(s), e.g. {missing[:5]}"
        )
    truth = {}
    for name in sorted(scores):
        truth[name] = frame_ground_truth(frame_counts[name], annotations[name])
        if len(truth[name]) != len(scores[name]):
            raise AnnotationError(
                f"{name}: {len(scores[name])} frame scores but {len(truth[name])} ground-truth frames "
                "(scores must cover every native frame exactly once)"
            )
    return truth


def roc_points(scores: dict[str, np.ndarray], truth: dict[str, np.ndarray], names: list[str]):
    """(fpr, tpr) of the concatenated series, or None when it holds one class only."""
    y, s = _concatenated(scores, truth, names)
    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr


def _concatenated(scores, truth, names) -> tuple[np.ndarray, np.ndarray]:
    if not names:
        return np.zeros(0, dtype=np.int8), np.zeros(0)
    return np.concatenate([truth[n] for n in names]), np.concatenate([scores[n] for n in names])


def _auc_ap(scores, truth, names) -> dict:
    y, s = _concatenated(scores, truth, names)
    base = {"videos": len(names), "frames": int(len(y)), "abnormal_frames": int(y.sum())}
    base["ap_chance"] = base["abnormal_frames"] / base["frames"] if base["frames"] else None
    if len(np.unique(y)) < 2:
        return {"auc": None, "ap": None, **base, "note": "one class only: AUC/AP undefined"}
    return {"auc": float(roc_auc_score(y, s)), "ap": float(average_precision_score(y, s)), **base}
