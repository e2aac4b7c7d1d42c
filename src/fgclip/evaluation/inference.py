"""Single-video inference and feature export with a trained fgclip model.

- `infer_video`: per-frame zero-shot anomaly scores of one video (16-frame snippets, each snippet's score
  repeated over its frames, exactly as the frame-level evaluation scores it) with per-snippet class
  probabilities, plus optional region scores for given boxes (region head: RoIAlign over the dense features,
  `roi_projection`, region prompts through `text_projection`, `logit_scale_finegraind`).
  `write_inference` writes `<stem>.scores.json`, `<stem>.scores.csv` and `<stem>.timeline.png`.
Feature export (per-snippet embeddings in fgclip's or VadCLIP's layout) lives in `fgclip.evaluation.export`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fgclip.data.dataset import sample_times, to_pixel_values
from fgclip.data.frames import FrameSource
from fgclip.data.video import decode_frames, probe_video
from fgclip.evaluation.anomaly import TemporalAnnotation, frame_ground_truth
from fgclip.evaluation.figures import plot_timeline
from fgclip.evaluation.pooling import SnippetPooling, pooled_embeddings
from fgclip.evaluation.snippet_options import DEFAULT_SNIPPETS, SnippetOptions
from fgclip.evaluation.snippets import VideoScores, embed_video_snippets, score_snippets
from fgclip.evaluation.zeroshot import DEFAULT_SCORING, PromptBank, anomaly_scores


@dataclass(frozen=True)
class RegionQuery:
    """A box held fixed over [t_start, t_end] seconds, x1,y1,x2,y2 normalised to [0, 1] of the frame."""

    t_start: float
    t_end: float
    box: tuple[float, float, float, float]

    def check(self, duration_s: float) -> None:
        x1, y1, x2, y2 = self.box
        if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
            raise ValueError(f"box {self.box}: need 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 (normalised)")
        if not 0 <= self.t_start < self.t_end <= duration_s + 1e-6:
            raise ValueError(
                f"box time span [{self.t_start}, {self.t_end}] s must lie in the video (0-{duration_s:.3f} s)"
            )


@dataclass(frozen=True)
class RegionScore:
    query: RegionQuery
    class_probs: np.ndarray  # (C,)
    anomaly_score: float


@dataclass(frozen=True)
class Inference:
    scores: VideoScores
    classes: tuple[str, ...]
    scoring: str
    regions: list[RegionScore]


@torch.no_grad()
def infer_video(
    model,
    video: str | Path,
    clip_bank: PromptBank,
    frames: FrameSource,
    options: SnippetOptions = DEFAULT_SNIPPETS,  # its `workers` is unused: one video
    *,
    scoring: str = DEFAULT_SCORING,
    region_bank: PromptBank | None = None,
    regions: list[RegionQuery] = (),
    region_num_frames: int = 8,
    progress: bool = True,
    pooling: SnippetPooling | None = None,  # None: the default (snippet)
) -> Inference:
    model.eval()
    snippets = embed_video_snippets(model, video, frames, options, progress=progress)
    region_scores = []
    if regions:
        if region_bank is None:
            raise ValueError("region queries need a region-head prompt bank")
        duration = probe_video(video).duration_s
        for query in regions:
            query.check(duration)
            region_scores.append(
                score_region(model, video, query, region_bank, frames.image_size, region_num_frames, scoring)
            )
    scores = score_snippets(snippets, clip_bank, scoring, pooled_embeddings(model, snippets, pooling))
    return Inference(scores, clip_bank.classes, scoring, region_scores)


@torch.no_grad()
def score_region(
    model, video, query: RegionQuery, bank: PromptBank, image_size: int, num_frames: int, scoring: str
) -> RegionScore:
    """Region embedding of a fixed box over `num_frames` bin-centre frames of its span, scored zero-shot."""
    device = next(model.parameters()).device
    times = sample_times((query.t_start, query.t_end), num_frames)
    pixels = to_pixel_values(decode_frames(video, times, size=(image_size, image_size)))  # (T, 3, H, W)
    features = model(
        pixel_values=pixels.unsqueeze(0).to(device),  # (1, T, 3, H, W)
        frame_mask=torch.ones(1, num_frames, dtype=torch.bool, device=device),
        region_boxes=torch.tensor(query.box, device=device).expand(1, num_frames, 1, 4),  # (1, T, 1, 4)
        region_box_mask=torch.ones(1, num_frames, 1, dtype=torch.bool, device=device),
        region_valid=torch.ones(1, 1, dtype=torch.bool, device=device),
    )
    probs = bank.class_probabilities(features["region_embeds"], scoring)  # (1, C)
    return RegionScore(query, probs[0].cpu().numpy(), float(anomaly_scores(probs)[0]))


def write_inference(
    result: Inference,
    out_dir: str | Path,
    *,
    annotation: TemporalAnnotation | None = None,
    meta: dict | None = None,
) -> dict[str, Path]:
    """`<stem>.scores.json` (everything), `<stem>.scores.csv` (one row per frame), `<stem>.timeline.png`."""
    scores = result.scores
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = scores.video.stem
    frame_scores = scores.frame_scores
    truth = frame_ground_truth(scores.layout.num_frames, annotation) if annotation is not None else None
    paths = {
        "json": out / f"{stem}.scores.json",
        "csv": out / f"{stem}.scores.csv",
        "png": out / f"{stem}.timeline.png",
    }
    paths["json"].write_text(json.dumps(_inference_json(result, meta or {}), indent=2))
    _write_csv(paths["csv"], result, frame_scores)
    regions = [
        (r.query.t_start, r.query.t_end, r.anomaly_score, _top_class(result.classes, r.class_probs))
        for r in result.regions
    ]
    plot_timeline(
        frame_scores,
        scores.fps,
        paths["png"],
        title=f"{scores.video.name} ({result.scoring})",
        truth=truth,
        regions=regions,
    )
    return paths


def _top_class(classes, probs) -> str:
    return classes[int(np.argmax(probs))]


def _inference_json(result: Inference, meta: dict) -> dict:
    scores, layout = result.scores, result.scores.layout
    snippets = []
    for s in range(layout.num_snippets):
        start, end = layout.bounds(s)
        snippets.append({
            "index": s, "first_frame": start, "last_frame": end - 1,
            "anomaly_score": float(scores.snippet_scores[s]),
            "class_probs": dict(zip(result.classes, map(float, scores.snippet_class_probs[s]), strict=True)),
        })  # fmt: skip
    regions = [
        {
            "t_start": r.query.t_start, "t_end": r.query.t_end, "box": list(r.query.box),
            "anomaly_score": r.anomaly_score, "top_class": _top_class(result.classes, r.class_probs),
            "class_probs": dict(zip(result.classes, map(float, r.class_probs), strict=True)),
        }
        for r in result.regions
    ]  # fmt: skip
    return {
        "video": str(scores.video),
        **meta,
        "fps": scores.fps,
        "num_frames": layout.num_frames,
        "snippet_frames": layout.snippet_frames,
        "frames_per_snippet": layout.frames_per_snippet,
        "scoring": result.scoring,
        "classes": list(result.classes),
        "frame_scores": [float(v) for v in scores.frame_scores],
        "snippets": snippets,
        "regions": regions,
    }


def _write_csv(path: Path, result: Inference, frame_scores: np.ndarray) -> None:
    layout, fps = result.scores.layout, result.scores.fps
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "time_s", "snippet", "anomaly_score", "top_class"])
        for frame, value in enumerate(frame_scores):
            snippet = frame // layout.snippet_frames
            top = _top_class(result.classes, result.scores.snippet_class_probs[snippet])
            writer.writerow([frame, f"{frame / fps:.4f}", snippet, f"{value:.6f}", top])
