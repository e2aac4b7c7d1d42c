"""Snippet embeddings of whole videos, streamed with bounded memory, and zero-shot snippet scores.

A video is cut by `SnippetLayout` (16-frame snippets, F sampled frames each, see `anomaly.py`); its frames
come from the shared `fgclip.data.frames.FrameSource` (streamed decoding or a frame cache), at most
`batch_frames` frames held and embedded at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from fgclip.data.crops import CropSpec, frame_crops
from fgclip.data.dataset import to_pixel_values
from fgclip.data.frames import FrameSource
from fgclip.data.probe import frame_shortfall
from fgclip.data.video import VideoError, probe_video, video_frame_times
from fgclip.evaluation.anomaly import SnippetLayout
from fgclip.evaluation.snippet_options import DEFAULT_SNIPPETS, SnippetOptions
from fgclip.evaluation.zeroshot import DEFAULT_SCORING, PromptBank, anomaly_scores

logger = logging.getLogger(__name__)


def readable_frame_times(video: Path) -> np.ndarray:
    """(N,) times of the frames the video holds; a warning names it when that is fewer than its header says
    (a file cut short: the frames up to the cut are scored, the rest are not)."""
    frame_times = video_frame_times(video)
    shortfall = frame_shortfall(video, len(frame_times))
    if shortfall is not None:
        logger.warning(shortfall)
    return frame_times


@dataclass(frozen=True)
class VideoSnippets:
    """Snippet embeddings of one video: each snippet's sampled frames and their temporal pooling."""

    video: Path
    layout: SnippetLayout
    fps: float
    embeds: np.ndarray  # (S, D) float32, L2-normalised clip embeddings (the snippet's F frames pooled)
    frame_embeds: np.ndarray  # (S, F, D) float32, L2-normalised embeddings of the sampled frames
    sample_times: np.ndarray  # (S, F) seconds of the sampled frames
    crop_embeds: np.ndarray | None = None  # (K, S, D) clip embeddings of every crop (`embeds` is crop 0)

    @property
    def duration_s(self) -> float:
        return self.layout.num_frames / self.fps


def snippet_chunks(
    video: Path, frames: FrameSource, frame_times: np.ndarray, layout: SnippetLayout, batch_frames: int
) -> Iterator[np.ndarray]:
    """(n, F, H, W, 3) uint8 runs of consecutive snippets, n = batch_frames // F (the last may be shorter):
    what one model call embeds, the same in the serial and the parallel path."""
    per_batch = max(1, batch_frames // layout.frames_per_snippet)
    snippets = frames.snippets(
        video,
        layout.sample_frames(),
        layout.num_full_snippets,
        layout.snippet_frames,
        frame_times,
        batch_frames,
    )
    pending = []
    for snippet in snippets:
        pending.append(snippet)
        if len(pending) == per_batch:
            yield np.stack(pending)
            pending = []
    if pending:
        yield np.stack(pending)


@torch.no_grad()
def embed_video_snippets(
    model,
    video: str | Path,
    frames: FrameSource,
    options: SnippetOptions = DEFAULT_SNIPPETS,
    *,
    progress: bool = False,
    crops: CropSpec | None = None,
) -> VideoSnippets:
    """Clip embedding of every snippet: F frames -> frame embeddings -> temporal pooling -> (S, D).
    With `crops` the frames (read at `crops.resize_side`) are embedded once per crop (`crop_embeds`)."""
    video = Path(video)
    frame_times = readable_frame_times(video)  # exact native frame count and times (packet index)
    layout = SnippetLayout(len(frame_times), options.snippet_frames, options.frames_per_snippet)
    device = next(model.parameters()).device
    bar = tqdm(total=layout.num_snippets, desc=video.name, unit="snippet", disable=not progress, leave=False)
    embeds = []
    for chunk in snippet_chunks(video, frames, frame_times, layout, options.batch_frames):
        embeds.append(
            _embed_batch(model, chunk, device, crops)
        )  # frame (n, F, D), clip (n, D), crops (K, n, D)
        bar.update(len(chunk))
    bar.close()
    return _video_snippets(video, layout, frame_times, embeds)


def _video_snippets(
    video: Path, layout: SnippetLayout, frame_times: np.ndarray, embeds: list
) -> VideoSnippets:
    frame_embeds = np.concatenate([frame for frame, _, _ in embeds])  # (S, F, D)
    clip_embeds = np.concatenate([clip for _, clip, _ in embeds])  # (S, D)
    crop_embeds = (
        np.concatenate([crop for _, _, crop in embeds], axis=1) if embeds[0][2] is not None else None
    )
    if len(clip_embeds) != layout.num_snippets:
        raise VideoError(f"{video}: embedded {len(clip_embeds)} snippets, expected {layout.num_snippets}")
    sample_times = frame_times[layout.sample_frames()]  # (S, F)
    fps = video_fps(video, frame_times)
    return VideoSnippets(video, layout, fps, clip_embeds, frame_embeds, sample_times, crop_embeds)


@torch.no_grad()
def iter_video_snippets(
    model,
    videos: list[Path],
    frames: FrameSource,
    options: SnippetOptions = DEFAULT_SNIPPETS,
    *,
    crops: CropSpec | None = None,
) -> Iterator[VideoSnippets]:
    """`embed_video_snippets` of every video; with `workers` > 0 the frames are decoded in DataLoader worker
    processes (videos split across them, at most two chunks per worker in flight) while the model embeds.
    Videos come out as they finish (not in input order); each one's embeddings are those of the serial path,
    chunk for chunk."""
    if options.workers == 0:
        for video in videos:
            yield embed_video_snippets(model, video, frames, options, crops=crops)
        return
    source = _VideoChunks([Path(v) for v in videos], frames, options)
    loader = DataLoader(source, batch_size=None, num_workers=options.workers, collate_fn=_as_is)
    device = next(model.parameters()).device
    started: dict[int, tuple] = {}
    embeds: dict[int, list] = {}
    for kind, index, payload in loader:
        if kind == "start":
            started[index], embeds[index] = payload, []
        elif kind == "chunk":
            embeds[index].append(_embed_batch(model, payload, device, crops))
        else:  # "end": payload = where the frames came from
            layout, frame_times = started.pop(index)
            frames.used[payload].append(str(videos[index]))
            yield _video_snippets(Path(videos[index]), layout, frame_times, embeds.pop(index))


class _VideoChunks(IterableDataset):
    """Worker k decodes videos k, k + W, ...: ("start", i, (layout, frame times)), ("chunk", i, frames)..., ("end", i, source)."""

    def __init__(self, videos, frames: FrameSource, options: SnippetOptions):
        self.videos, self.frames, self.options = videos, frames, options

    def __iter__(self):
        worker = get_worker_info()
        indices = (
            range(len(self.videos))[worker.id :: worker.num_workers] if worker else range(len(self.videos))
        )
        for index in indices:
            video = self.videos[index]
            frame_times = readable_frame_times(video)
            layout = SnippetLayout(
                len(frame_times), self.options.snippet_frames, self.options.frames_per_snippet
            )
            yield "start", index, (layout, frame_times)
            for chunk in snippet_chunks(video, self.frames, frame_times, layout, self.options.batch_frames):
                yield "chunk", index, chunk
            yield (
                "end",
                index,
                "frame_cache" if self.frames.used["frame_cache"][-1:] == [str(video)] else "decoded",
            )


def _as_is(item):
    return item


def _embed_batch(model, stacked: np.ndarray, device, crops: CropSpec | None = None):
    """(n, F, H, W, 3) uint8 snippets -> (n, F, D) frame embeddings, (n, D) clip embeddings (of crop 0) and
    (K, n, D) clip embeddings of every crop (None without `crops`). One model call per crop, so a call
    embeds as many frames as without crops."""
    if crops is None:
        return (*_embed_views(model, stacked, device), None)
    views = [
        _embed_views(model, view, device) for view in frame_crops(stacked, crops)
    ]  # K x ((n, F, D), (n, D))
    return views[0][0], views[0][1], np.stack([clip for _, clip in views])


def _embed_views(model, stacked: np.ndarray, device) -> tuple[np.ndarray, np.ndarray]:
    """(n, F, H, W, 3) uint8 snippets -> (n, F, D) frame embeddings and (n, D) clip embeddings."""
    n, f = stacked.shape[:2]
    pixels = to_pixel_values(stacked.reshape(n * f, *stacked.shape[2:])).to(device)  # (n*F, 3, H, W)
    frame_embeds = model.frame_embeddings(pixels).view(n, f, -1)  # (n, F, D)
    mask = torch.ones(n, f, dtype=torch.bool, device=device)
    clip_embeds = model.clip_embeddings(frame_embeds, mask)  # (n, D)
    return frame_embeds.float().cpu().numpy(), clip_embeds.float().cpu().numpy()


def video_fps(video: Path, frame_times: np.ndarray) -> float:
    """Frames per second from the packet times (the header's rate for a one-frame video)."""
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


def score_snippets(
    snippets: VideoSnippets, bank: PromptBank, rule: str = DEFAULT_SCORING, embeds: np.ndarray | None = None
) -> VideoScores:
    """Class probabilities and anomaly score of every snippet, read from `embeds` (default: the snippet
    clip embeddings; see `fgclip.evaluation.pooling`): (S, D), or (S, F, D) frame embeddings whose
    probabilities are averaged over each snippet's F frames."""
    embeds = snippets.embeds if embeds is None else embeds
    probs = bank.class_probabilities(torch.from_numpy(embeds.reshape(-1, embeds.shape[-1])), rule)  # (S*F, C)
    probs = probs.view(len(embeds), -1, probs.shape[-1]).mean(1)  # (S, C): one row per snippet
    return VideoScores(
        snippets.video,
        snippets.layout,
        snippets.fps,
        probs.cpu().numpy(),
        anomaly_scores(probs).cpu().numpy(),
    )
