"""Snippet embeddings of whole videos, streamed with bounded memory, and zero-shot snippet scores.

A video is cut by `SnippetLayout` (16-frame snippets, F sampled frames each, see `anomaly.py`); its frames
come from the shared `fgclip.data.frames.FrameSource` (streamed decoding or a frame cache), at most
`batch_frames` frames held and embedded at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fgclip.data.dataset import to_pixel_values
from fgclip.data.frames import FrameSource
from fgclip.data.video import VideoError, probe_video, video_frame_times
from fgclip.evaluation.anomaly import SnippetLayout
from fgclip.evaluation.zeroshot import DEFAULT_SCORING, PromptBank, anomaly_scores


@dataclass(frozen=True)
class VideoSnippets:
    """Snippet clip embeddings of one video."""

    video: Path
    layout: SnippetLayout
    fps: float
    embeds: np.ndarray  # (S, D) float32, L2-normalised clip embeddings


@torch.no_grad()
def embed_video_snippets(
    model,
    video: str | Path,
    frames: FrameSource,
    *,
    snippet_frames: int = 16,
    frames_per_snippet: int = 8,
    batch_frames: int = 256,
    progress: bool = False,
) -> VideoSnippets:
    """Clip embedding of every snippet: F frames -> frame embeddings -> temporal pooling -> (S, D)."""
    video = Path(video)
    frame_times = video_frame_times(video)  # exact native frame count and times (packet index)
    layout = SnippetLayout(len(frame_times), snippet_frames, frames_per_snippet)
    device = next(model.parameters()).device
    per_batch = max(1, batch_frames // frames_per_snippet)
    embeds, pending = [], []
    bar = tqdm(total=layout.num_snippets, desc=video.name, unit="snippet", disable=not progress, leave=False)
    snippets = frames.snippets(
        video, layout.sample_frames(), layout.num_full_snippets, snippet_frames, frame_times, batch_frames
    )
    for snippet in snippets:
        pending.append(snippet)
        if len(pending) == per_batch:
            embeds.append(_embed_batch(model, pending, device))
            bar.update(len(pending))
            pending = []
    if pending:
        embeds.append(_embed_batch(model, pending, device))
        bar.update(len(pending))
    bar.close()
    result = np.concatenate(embeds)
    if len(result) != layout.num_snippets:
        raise VideoError(f"{video}: embedded {len(result)} snippets, expected {layout.num_snippets}")
    return VideoSnippets(video, layout, _fps(video, frame_times), result)


def _embed_batch(model, snippets: list[np.ndarray], device) -> np.ndarray:
    stacked = np.stack(snippets)  # (n, F, H, W, 3) uint8
    n, f = stacked.shape[:2]
    pixels = to_pixel_values(stacked.reshape(n * f, *stacked.shape[2:])).to(device)  # (n*F, 3, H, W)
    frame_embeds = model.frame_embeddings(pixels).view(n, f, -1)  # (n, F, D)
    mask = torch.ones(n, f, dtype=torch.bool, device=device)
    return model.clip_embeddings(frame_embeds, mask).float().cpu().numpy()  # (n, D)


def _fps(video: Path, frame_times: np.ndarray) -> float:
    if len(frame_times) > 1:
        return float((len(frame_times) - 1) / (frame_times[-1] - frame_times[0]))
    return probe_video(video).fps


@dataclass(frozen=True)
class VideoScores:
    """Zero-shot anomaly scores of one video."""

    video: Path
    layout: SnippetLayout
    fps: float
    snippet_class_probs: np.ndarray  # (S, C) float64
    snippet_scores: np.ndarray  # (S,) anomaly probability

    @property
    def frame_scores(self) -> np.ndarray:
        """(N,) each snippet's score repeated over its native frames."""
        return self.layout.repeat(self.snippet_scores)


def score_snippets(snippets: VideoSnippets, bank: PromptBank, rule: str = DEFAULT_SCORING) -> VideoScores:
    probs = bank.class_probabilities(torch.from_numpy(snippets.embeds), rule)  # (S, C)
    return VideoScores(
        snippets.video,
        snippets.layout,
        snippets.fps,
        probs.cpu().numpy(),
        anomaly_scores(probs).cpu().numpy(),
    )
