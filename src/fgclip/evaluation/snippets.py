"""Snippet embeddings of whole videos, streamed with bounded memory, and zero-shot snippet scores.

A video is cut by `SnippetLayout` (16-frame snippets, F sampled frames each, see `anomaly.py`). Frames are
never decoded into memory at once: the whole snippets are read in one sequential pass (`iter_frames`, which
converts only every k-th frame when the samples form a regular grid -- the default F=8 of 16 does), the
short last snippet with one sparse `decode_frames` call, and at most `batch_frames` frames are held (and
embedded) at a time. With a `FrameCache` that covers the whole video at the model's input size the frames
are read from the cache instead (no decoding); `write_cache` fills the cache first (every native frame,
`cache_fps=0`, so cached reads return exactly the decoded frames up to JPEG loss).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fgclip.data.dataset import to_pixel_values
from fgclip.data.frame_cache import FrameCache
from fgclip.data.video import VideoError, decode_frames, iter_frames, probe_video, video_frame_times
from fgclip.evaluation.anomaly import SnippetLayout
from fgclip.evaluation.zeroshot import DEFAULT_SCORING, PromptBank, anomaly_scores


@dataclass
class SnippetFrames:
    """Where snippet frames come from: the video (streamed) or a frame cache. Counts which was used."""

    image_size: int
    cache: FrameCache | None = None
    write_cache: bool = False
    used: dict[str, list[str]] = field(default_factory=lambda: {"decoded": [], "frame_cache": []})

    def snippets(self, video: Path, layout: SnippetLayout, frame_times: np.ndarray) -> Iterator[np.ndarray]:
        """(F, H, W, 3) uint8 frames of every snippet, in order."""
        if self._cached(video, frame_times):
            self.used["frame_cache"].append(str(video))
            return self._from_cache(video, layout, frame_times)
        self.used["decoded"].append(str(video))
        return self._decoded(video, layout, frame_times)

    @property
    def size(self) -> tuple[int, int]:
        return self.image_size, self.image_size

    def _cached(self, video: Path, frame_times: np.ndarray) -> bool:
        if self.cache is None:
            return False
        span = (0.0, float(frame_times[-1]))
        if self.write_cache and not self.cache.has(video, span, size=self.size):
            self.cache.write(video, [span], cache_fps=0, size=self.size)
        return self.cache.has(video, span, size=self.size)

    def _from_cache(self, video, layout, frame_times) -> Iterator[np.ndarray]:
        samples = layout.sample_frames()  # (S, F)
        step = max(1, 256 // layout.frames_per_snippet)
        for first in range(0, layout.num_snippets, step):
            chunk = samples[first : first + step]  # (n, F)
            frames = self.cache.read(video, frame_times[chunk.reshape(-1)], size=self.size)
            yield from frames.reshape(*chunk.shape, *frames.shape[1:])

    def _decoded(self, video, layout, frame_times) -> Iterator[np.ndarray]:
        samples = layout.sample_frames()  # (S, F)
        full = layout.num_full_snippets
        if full:
            yield from self._stream(video, samples[:full], frame_times, full * layout.snippet_frames)
        if layout.num_snippets > full:  # the short last snippet: one sparse decode of its F samples
            yield decode_frames(video, frame_times[samples[full]], size=self.size)

    def _stream(self, video, samples: np.ndarray, frame_times: np.ndarray, stop: int) -> Iterator[np.ndarray]:
        """One sequential pass over native frames [samples[0, 0], stop), keeping the sampled ones."""
        targets = samples.reshape(-1)  # ascending and unique (F <= snippet_frames)
        steps = np.diff(targets)
        every = int(steps[0]) if len(steps) and (steps == steps[0]).all() else 1
        end_s = float(frame_times[stop]) if stop < len(frame_times) else None
        frames = iter_frames(
            video, start_s=float(frame_times[targets[0]]), end_s=end_s, size=self.size, every=every
        )
        wanted, snippet = 0, []
        for index, _, image in frames:
            if wanted == len(targets) or index < targets[wanted]:
                continue  # only possible with every=1: a frame between samples
            if index != targets[wanted]:
                raise VideoError(
                    f"{video}: expected native frame {targets[wanted]}, the decoder gave {index}"
                )
            snippet.append(image)
            wanted += 1
            if len(snippet) == samples.shape[1]:
                yield np.stack(snippet)
                snippet = []
        if wanted != len(targets):
            raise VideoError(f"{video}: the decoder stopped after {wanted} of {len(targets)} sampled frames")


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
    frames: SnippetFrames,
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
    for snippet in frames.snippets(video, layout, frame_times):
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
