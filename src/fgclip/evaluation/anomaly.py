"""Zero-shot frame-level anomaly detection as the VAD literature computes it.

Each video is cut into snippets of `snippet_frames` (16) native frames; a snippet's clip embedding is
compared with normal and anomaly prompts; its anomaly probability is repeated over its frames and the
series is cut to the video's frame count. All test videos are concatenated and compared with the
ground truth built from a UCF-Crime-style temporal annotation file on the same native-frame grid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from fgclip.data.dataset import to_pixel_values
from fgclip.data.video import decode_frames, probe_video


@dataclass(frozen=True)
class TemporalAnnotation:
    name: str  # video name without extension, e.g. "Abuse028_x264"
    label: str  # class name, "Normal" for normal videos
    segments: tuple[tuple[int, int], ...]  # native frames, inclusive


@dataclass(frozen=True)
class PromptSet:
    normal: tuple[str, ...]
    anomaly: dict[str, tuple[str, ...]]  # class -> prompts

    @classmethod
    def from_json(cls, path: str | Path) -> PromptSet:
        data = json.loads(Path(path).read_text())
        if not data.get("normal") or not data.get("anomaly"):
            raise ValueError(
                f"{path}: needs non-empty 'normal' list and 'anomaly' mapping of class -> prompts"
            )
        return cls(tuple(data["normal"]), {k: tuple(v) for k, v in data["anomaly"].items()})

    def texts(self) -> tuple[list[str], int]:
        """All prompts, normal first, and the number of normal prompts."""
        anomaly = [p for prompts in self.anomaly.values() for p in prompts]
        return [*self.normal, *anomaly], len(self.normal)


def read_temporal_annotations(path: str | Path) -> dict[str, TemporalAnnotation]:
    """`Name  Class  s1  e1  s2  e2` per line; -1 marks an absent segment."""
    table = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise ValueError(f"{path}:{number}: expected 'Name Class s1 e1 s2 e2', got {line!r}")
        name, label, *bounds = fields
        values = [int(v) for v in bounds]
        segments = tuple((s, e) for s, e in zip(values[::2], values[1::2], strict=True) if s >= 0 and e >= 0)
        if any(e < s for s, e in segments):
            raise ValueError(f"{path}:{number}: segment end before start in {line!r}")
        table[Path(name).stem] = TemporalAnnotation(Path(name).stem, label, segments)
    return table


def ground_truth(num_frames: int, segments: tuple[tuple[int, int], ...]) -> np.ndarray:
    gt = np.zeros(num_frames, dtype=np.int8)
    for start, end in segments:
        gt[start : min(end, num_frames - 1) + 1] = 1
    return gt


def snippet_times(num_frames: int, fps: float, snippet_frames: int, frames_per_snippet: int) -> np.ndarray:
    """(S, F) sample times: F bin centres inside each snippet of `snippet_frames` native frames."""
    num_snippets = int(np.ceil(num_frames / snippet_frames))
    starts = np.arange(num_snippets) * snippet_frames  # (S,)
    ends = np.minimum(starts + snippet_frames, num_frames)  # last snippet may be short
    offsets = (np.arange(frames_per_snippet) + 0.5) / frames_per_snippet  # (F,)
    frames = starts[:, None] + offsets[None, :] * (ends - starts)[:, None]  # (S, F) in native frames
    return frames / fps


@torch.no_grad()
def score_video(
    model,
    video: str | Path,
    prompt_embeds: torch.Tensor,
    num_normal: int,
    *,
    image_size: int,
    snippet_frames: int = 16,
    frames_per_snippet: int = 8,
    batch_frames: int = 256,
) -> np.ndarray:
    """Per-frame anomaly probability of one video (length = its native frame count)."""
    info = probe_video(video)
    times = snippet_times(info.num_frames, info.fps, snippet_frames, frames_per_snippet)  # (S, F)
    device = next(model.parameters()).device
    pixels = to_pixel_values(
        decode_frames(video, times.reshape(-1), size=(image_size, image_size))
    )  # (S*F, 3, H, W)
    frame_embeds = torch.cat(
        [model.frame_embeddings(chunk.to(device)) for chunk in pixels.split(batch_frames)]
    ).view(*times.shape, -1)  # (S, F, D)
    mask = torch.ones(times.shape, dtype=torch.bool, device=device)
    clip_embeds = model.clip_embeddings(frame_embeds, mask)  # (S, D)
    logits = model.logit_scale.exp() * clip_embeds @ prompt_embeds.T  # (S, P)
    snippet_scores = logits.softmax(-1)[:, num_normal:].sum(-1).cpu().numpy()  # (S,)
    return np.repeat(snippet_scores, snippet_frames)[: info.num_frames]


def frame_level_metrics(scores: dict[str, np.ndarray], annotations: dict[str, TemporalAnnotation]) -> dict:
    """AUC and AP over all videos concatenated, over abnormal videos only, and per class."""
    missing = sorted(set(scores) - set(annotations))
    if missing:
        raise ValueError(f"no temporal annotation for {len(missing)} scored video(s), e.g. {missing[:5]}")
    truth = {name: ground_truth(len(s), annotations[name].segments) for name, s in scores.items()}
    result = {"overall": _auc_ap(scores, truth, list(scores))}
    abnormal = [n for n in scores if annotations[n].label.lower() != "normal"]
    result["abnormal_videos"] = _auc_ap(scores, truth, abnormal)
    for label in sorted({annotations[n].label for n in abnormal}):
        names = [n for n in scores if annotations[n].label in (label, "Normal")]
        result[f"class/{label}"] = _auc_ap(scores, truth, names)
    return result


def _auc_ap(scores, truth, names) -> dict:
    y = np.concatenate([truth[n] for n in names]) if names else np.zeros(0)
    s = np.concatenate([scores[n] for n in names]) if names else np.zeros(0)
    if len(np.unique(y)) < 2:
        return {"auc": None, "ap": None, "frames": int(len(y)), "note": "one class only"}
    return {
        "auc": float(roc_auc_score(y, s)),
        "ap": float(average_precision_score(y, s)),
        "frames": int(len(y)),
    }
