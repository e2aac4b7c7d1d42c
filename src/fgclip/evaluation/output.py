"""Console table and files of an evaluation: JSON report, ROC curve PNG, score-timeline PNGs, frame scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fgclip.evaluation.anomaly import frame_truths, roc_points
from fgclip.evaluation.evaluators import Evaluation, table_rows
from fgclip.evaluation.figures import plot_roc, plot_timeline
from fgclip.evaluation.measures import stack_scores

REPORT_FILE = "eval.json"
ROC_FILE = "roc_curve.png"
SCORES_FILE = "frame_scores.npz"
TIMELINE_DIR = "timelines"


def format_table(report: dict) -> str:
    """One row per metric of every evaluator that ran (each evaluator declares its rows)."""
    lines = [f"{'metric':<44} {'value':>7} {'chance':>7}"]
    for name, value, chance in table_rows(report):
        shown = "-" if value is None else f"{value:7.3f}"
        lines.append(f"{name:<44} {shown:>7} {'' if chance is None else f'{chance:7.3f}':>7}")
    return "\n".join(lines)


def write_evaluation(evaluation: Evaluation, out_dir: str | Path, *, timelines: int = 6) -> dict[str, Path]:
    """eval.json, plus with frame-level results: roc_curve.png, frame_scores.npz and `timelines` timeline PNGs
    (abnormal videos first, by name). Returns what was written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"report": out / REPORT_FILE}
    written["report"].write_text(json.dumps(evaluation.report, indent=2))
    if not evaluation.scores:
        return written
    scores, counts = stack_scores(evaluation.scores)
    truth = frame_truths(scores, evaluation.annotations, counts)
    written["roc"] = _write_roc(scores, truth, evaluation, out / ROC_FILE)
    written["scores"] = out / SCORES_FILE
    np.savez_compressed(
        written["scores"],
        **{f"{n}/score": scores[n] for n in scores},
        **{f"{n}/truth": truth[n] for n in truth},
    )
    for name in _timeline_videos(evaluation, timelines):
        video = evaluation.scores[name]
        label = evaluation.annotations[name].label
        path = out / TIMELINE_DIR / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        written[f"timeline/{name}"] = plot_timeline(
            scores[name], video.fps, path, title=f"{name} ({label})", truth=truth[name]
        )
    return written


def _write_roc(scores, truth, evaluation: Evaluation, path: Path) -> Path:
    names = sorted(scores)
    abnormal = [n for n in names if evaluation.annotations[n].is_abnormal]
    frame = evaluation.report["frame_level"]
    curves = {}
    for label, subset, part in (
        ("all videos", names, frame["overall"]),
        ("abnormal videos", abnormal, frame["abnormal_videos"]),
    ):
        points = roc_points(scores, truth, subset)
        if points is not None:
            curves[label] = (*points, part["auc"])
    return plot_roc(curves, path)


def _timeline_videos(evaluation: Evaluation, count: int) -> list[str]:
    names = sorted(evaluation.scores, key=lambda n: (not evaluation.annotations[n].is_abnormal, n))
    return names[:count]
