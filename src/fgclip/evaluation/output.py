"""Console table and files of an evaluation: JSON report, ROC curve PNG, score-timeline PNGs, frame scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fgclip.evaluation.anomaly import frame_truths, roc_points
from fgclip.evaluation.evaluate import stack_scores
from fgclip.evaluation.evaluators import Evaluation
from fgclip.evaluation.figures import plot_roc, plot_timeline

REPORT_FILE = "eval.json"
ROC_FILE = "roc_curve.png"
SCORES_FILE = "frame_scores.npz"
TIMELINE_DIR = "timelines"


def format_table(report: dict) -> str:
    lines = [f"{'metric':<44} {'value':>7} {'chance':>7}"]

    def row(name, value, chance=None):
        shown = "-" if value is None else f"{value:7.3f}"
        lines.append(f"{name:<44} {shown:>7} {'' if chance is None else f'{chance:7.3f}':>7}")

    retrieval = report.get("retrieval")
    if retrieval:
        _retrieval_rows(retrieval, row)
    hard = report.get("hard_negatives")
    if hard:
        flag = " BELOW CHANCE" if hard.get("below_chance") else ""
        row(
            f"hard-negative accuracy ({hard['regions']} regions){flag}",
            hard["accuracy"],
            hard.get("accuracy_chance"),
        )
    classification = report.get("region_classification")
    if classification:
        row(f"region classification ({classification['regions_with_class']} regions)",
            classification["accuracy"], classification["accuracy_chance"])  # fmt: skip
        row(
            "region normal/abnormal accuracy",
            classification["binary_accuracy"],
            classification["binary_chance"],
        )
    frame = report.get("frame_level")
    if frame:
        for name, part in (("overall", frame["overall"]), ("abnormal videos", frame["abnormal_videos"])):
            row(f"frame AUC, {name} ({part['videos']} videos)", part["auc"], 0.5)
            row(f"frame AP, {name}", part["ap"], part["ap_chance"])
        for label, part in frame["per_class"].items():
            row(f"  {label}: frame AUC ({part['videos']} videos)", part["auc"], 0.5)
            row(f"  {label}: frame AP", part["ap"], part["ap_chance"])
    localization = report.get("localization")
    if localization and localization["frames"]:
        _localization_rows(localization, row)
    return "\n".join(lines)


def _localization_rows(part: dict, row) -> None:
    row(f"localization pointing ({part['frames']} frames)", part["pointing"], part["pointing_chance"])
    row("localization map-box IoU", part["iou"], part["iou_chance"])
    if part["twin_frames"]:
        row(
            f"  same box in the normal twin ({part['twin_frames']})",
            part["twin_pointing"],
            part["pointing_chance"],
        )
    if part["object_frames"]:
        row(f"  anomalous object among all ({part['object_frames']})", part["object_choice"],
            part["object_choice_chance"])  # fmt: skip


def _retrieval_rows(retrieval: dict, row) -> None:
    for level in ("clip", "region"):
        arrows = (("text_to_image", f"text->{level}"), ("image_to_text", f"{level}->text"))
        for direction, arrow in arrows:
            for k in (1, 5, 10):
                key = f"{direction}_R@{k}"
                name = f"{level} retrieval R@{k} ({arrow}, {retrieval['num_' + level + 's']})"
                row(name, retrieval[level][key], retrieval[level][f"{key}_chance"])


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
