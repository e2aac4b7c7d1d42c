"""Frame-level AUC / AP of a trained head on test features, with the project's ground-truth and metric code.

Native convention (the project's, `fgclip.evaluation.anomaly`): every native frame of a test video is scored --
snippet s's score is repeated over its frames [16 s, min(16 s + 16, N)) by `SnippetLayout.repeat`, exactly as
the zero-shot path scores it -- and labelled from the temporal annotation (0-based, end inclusive);
`frame_level_metrics` concatenates all videos and reports AUC / AP overall, on abnormal videos only and per
class. Features exported with `--partial-snippet drop` have no score for the frames of the short last snippet;
those frames take the last snippet's score (as the original MATLAB evaluation extends the last score).

VadCLIP convention, beside it so the numbers compare with published ones: each video is 16 * T frames long
(T = its feature snippets), scores are `np.repeat(score, 16)` and the ground truth is `gt[s:e] = 1` (end
exclusive) over those 16 T frames (VadCLIP `list/make_gt_ucf.py`, RTFM / MIST likewise).

Ground truth: the UCF-Crime annotation file (`Name Class s1 e1 s2 e2`), or, for MSAD (whose public release
ships no file in that layout) and any dataset with more than two segments per video, a JSON object
`{"Name": {"class": "Fire", "segments": [[s, e], ...]}, ...}` with native frames, 0-based, end inclusive, and
`"class": "Normal", "segments": []` for normal videos.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from fgclip.evaluation.anomaly import (
    AnnotationError,
    SnippetLayout,
    TemporalAnnotation,
    frame_ground_truth,
    frame_level_metrics,
    frame_truths,
    read_temporal_annotations,
)
from fgclip.evaluation.figures import plot_timeline
from fgclip.head.features import FeatureError, FeatureSet, VideoFeatures, VideoLabel
from fgclip.head.model import AnomalyHead
from fgclip.head.train import score_videos

VADCLIP_SNIPPET_FRAMES = 16


@dataclass(frozen=True)
class HeadEvaluation:
    report: dict
    snippet_scores: dict[str, np.ndarray]  # video -> (S,)
    frame_scores: dict[str, np.ndarray]  # video -> (N,) native frames


def read_ground_truth(path: str | Path) -> dict[str, TemporalAnnotation]:
    """UCF-Crime annotation text file, or the JSON layout of the module docstring (MSAD)."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return read_temporal_annotations(path)
    if not path.is_file():
        raise FileNotFoundError(f"temporal annotation file not found: {path}")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not data:
        raise AnnotationError(f"{path}: expected a non-empty object of video -> {{class, segments}}")
    return {Path(name).stem: _json_annotation(path, name, entry) for name, entry in data.items()}


def _json_annotation(path: Path, name: str, entry) -> TemporalAnnotation:
    where = f"{path}: video {name!r}"
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str) or "segments" not in entry:
        raise AnnotationError(f"{where}: expected {{'class': str, 'segments': [[s, e], ...]}}")
    segments = []
    for segment in entry["segments"]:
        if not (isinstance(segment, list) and len(segment) == 2 and all(isinstance(v, int) for v in segment)):
            raise AnnotationError(f"{where}: segment {segment!r} is not [start, end] integers")
        if not 0 <= segment[0] <= segment[1]:
            raise AnnotationError(
                f"{where}: segment {segment} needs 0 <= start <= end (0-based, end inclusive)"
            )
        segments.append((segment[0], segment[1]))
    annotation = TemporalAnnotation(Path(name).stem, entry["class"], tuple(segments))
    if annotation.is_abnormal != bool(segments):
        raise AnnotationError(f"{where}: class {entry['class']!r} with {len(segments)} segment(s)")
    return annotation


def native_frame_scores(video: VideoFeatures, snippet_scores: np.ndarray) -> np.ndarray:
    """(S,) snippet scores -> (N,) native frame scores, as the zero-shot evaluation repeats them."""
    layout = SnippetLayout(video.num_frames, video.snippet_frames, frames_per_snippet=1)
    if video.partial_snippet == "drop" and layout.num_snippets > len(snippet_scores):
        snippet_scores = np.append(snippet_scores, snippet_scores[-1])  # the dropped short snippet's frames
    return layout.repeat(snippet_scores)


def vadclip_convention_metrics(
    snippet_scores: dict[str, np.ndarray], annotations: dict[str, TemporalAnnotation], names: list[str]
) -> dict:
    """AUC / AP with 16 * T frames per video and end-exclusive ground truth (VadCLIP, RTFM, MIST)."""
    truth, scores = [], []
    for name in names:
        frames = VADCLIP_SNIPPET_FRAMES * len(snippet_scores[name])
        gt = np.zeros(frames, dtype=np.int8)
        for start, end in annotations[name].segments:
            gt[start:end] = 1  # end exclusive, cut at 16 T as numpy slicing does
        truth.append(gt)
        scores.append(np.repeat(snippet_scores[name], VADCLIP_SNIPPET_FRAMES))
    y, s = np.concatenate(truth), np.concatenate(scores)
    if len(np.unique(y)) < 2:
        return {"auc": None, "ap": None, "frames": int(len(y)), "note": "one class only: AUC/AP undefined"}
    return {
        "auc": float(roc_auc_score(y, s)),
        "ap": float(average_precision_score(y, s)),
        "frames": int(len(y)),
    }


def evaluate_head(
    head: AnomalyHead,
    features: FeatureSet,
    test_labels: dict[str, VideoLabel],
    annotations: dict[str, TemporalAnnotation],
    *,
    out_dir: str | Path | None = None,
    timelines: int = 6,
) -> HeadEvaluation:
    """Score every test video, then the native and VadCLIP-convention frame metrics and a video-level AUC."""
    names = sorted(test_labels)
    videos = check_test_set(features, test_labels, annotations)
    snippet = dict(zip(names, score_videos(head, [videos[n].features for n in names]), strict=True))
    frame = {n: native_frame_scores(videos[n], snippet[n]) for n in names}
    counts = {n: videos[n].num_frames for n in names}
    abnormal = [n for n in names if annotations[n].is_abnormal]
    report = {
        "features": str(features.root),
        "convention": "native: every native frame scored, ground truth 0-based end inclusive (fgclip.evaluation.anomaly)",
        "frame_level": frame_level_metrics(frame, annotations, counts),
        "vadclip_convention": {
            "convention": "16 * T frames per video, gt[s:e] = 1 end exclusive (VadCLIP / RTFM / MIST)",
            "overall": vadclip_convention_metrics(snippet, annotations, names),
            "abnormal_videos": vadclip_convention_metrics(snippet, annotations, abnormal),
        },
        "video_level_auc_max": _video_auc(snippet, annotations, names),
    }
    evaluation = HeadEvaluation(report, snippet, frame)
    if out_dir is not None:
        write_evaluation(evaluation, Path(out_dir), videos, annotations, timelines)
    return evaluation


def check_test_set(
    features: FeatureSet, test_labels: dict[str, VideoLabel], annotations: dict[str, TemporalAnnotation]
) -> dict[str, VideoFeatures]:
    """Every test video has features, an annotation that agrees with its list label and fits its frame count."""
    videos = {v.name: v for v in features.select(sorted(test_labels), "the test list")}
    _check_labels_match(test_labels, annotations)
    if not any(annotations[n].is_abnormal for n in videos):
        raise AnnotationError("the test list has no abnormal video: frame AUC / AP are undefined")
    for name, video in videos.items():
        try:
            frame_ground_truth(video.num_frames, annotations[name])
        except AnnotationError as error:
            raise AnnotationError(f"{features.root}: {error}") from None
    return videos


def _check_labels_match(
    test_labels: dict[str, VideoLabel], annotations: dict[str, TemporalAnnotation]
) -> None:
    for name, label in sorted(test_labels.items()):
        annotation = annotations.get(name)
        if annotation is None:
            raise AnnotationError(f"test video {name!r} has no line in the temporal annotation file")
        if annotation.is_abnormal != label.abnormal:
            raise FeatureError(
                f"test video {name!r}: the test list says {'abnormal' if label.abnormal else 'normal'}, the "
                f"temporal annotation says {annotation.label!r}"
            )


def _video_auc(snippet: dict[str, np.ndarray], annotations, names: list[str]) -> float | None:
    y = [annotations[n].is_abnormal for n in names]
    if len(set(y)) < 2:
        return None
    return float(roc_auc_score(y, [snippet[n].max() for n in names]))


def worst_videos(evaluation: HeadEvaluation, truth: dict[str, np.ndarray], count: int) -> list[str]:
    """Videos with the largest mean |frame score - frame label|: where the head is most wrong."""
    error = {n: float(np.abs(evaluation.frame_scores[n] - truth[n]).mean()) for n in evaluation.frame_scores}
    return sorted(error, key=lambda n: (-error[n], n))[:count]


def write_evaluation(
    evaluation: HeadEvaluation, out: Path, videos, annotations, timelines: int
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    counts = {n: videos[n].num_frames for n in evaluation.frame_scores}
    truth = frame_truths(evaluation.frame_scores, annotations, counts)
    paths = {"report": out / "head_eval.json", "scores": out / "frame_scores.npz"}
    paths["report"].write_text(json.dumps(evaluation.report, indent=2))
    np.savez(paths["scores"], **{f"{n}/score": s for n, s in evaluation.frame_scores.items()})
    (out / "timelines").mkdir(exist_ok=True)
    for name in worst_videos(evaluation, truth, timelines):
        plot_timeline(evaluation.frame_scores[name], videos[name].fps, out / "timelines" / f"{name}.png",
                      title=f"{name} ({annotations[name].label}): anomaly head", truth=truth[name])  # fmt: skip
    return paths


def format_evaluation(report: dict) -> str:
    frame, vadclip = report["frame_level"], report["vadclip_convention"]
    lines = [
        f"frame AUC / AP, overall ({frame['num_videos']['total']} videos, every native frame): "
        f"{_fmt(frame['overall']['auc'])} / {_fmt(frame['overall']['ap'])}",
        f"frame AUC / AP, VadCLIP convention (16*T frames, end-exclusive gt): "
        f"{_fmt(vadclip['overall']['auc'])} / {_fmt(vadclip['overall']['ap'])}",
        f"frame AUC, abnormal videos only ({frame['num_videos']['abnormal']}): {_fmt(frame['abnormal_videos']['auc'])}",
    ]
    for label, values in frame["per_class"].items():
        lines.append(f"  {label}: AUC {_fmt(values['auc'])} ({values['videos']} videos)")
    lines.append(f"video-level AUC (max snippet score): {_fmt(report['video_level_auc_max'])}")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
