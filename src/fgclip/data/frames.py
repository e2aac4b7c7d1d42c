"""One frame source for training and evaluation: frames of a video at given times, from a frame cache where
it covers them, else decoded with PyAV — sparse (a clip's T sampled times) or streamed (every snippet of
a whole video, bounded memory).

Sparse reads return the frames at or before each time (the last native or cached frame, as a player would
show them) and the times of those frames. Streaming reads the whole snippets in one sequential pass
(`iter_frames`, which converts only every k-th frame when the samples form a regular grid), the short
last snippet with one sparse decode, and holds at most `batch_frames` frames at a time. With a cache that
covers the whole video at the requested size the frames are read from it instead; `write_cache` fills the
cache first (every native frame, `cache_fps=0`, so cached reads return the decoded frames up to JPEG loss).
`used` records which videos came from where (the evaluation report prints it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgclip.data.frame_cache import FrameCache
from fgclip.data.sampling import snap_to_frames
from fgclip.data.video import VideoError, decode_frames, iter_frames, video_frame_times


@dataclass
class FrameSource:
    image_size: int
    cache: FrameCache | None = None
    write_cache: bool = False
    used: dict[str, list[str]] = field(default_factory=lambda: {"decoded": [], "frame_cache": []})

    @property
    def size(self) -> tuple[int, int]:
        return self.image_size, self.image_size

    # ----------------------------------------------------------------------------------------- sparse
    def shown_times(self, video: Path, times: np.ndarray) -> np.ndarray:
        """(T,) seconds of the frames a sparse read at `times` returns (the last frame at or before each)."""
        cached = self.cache.frame_times(video) if self.cache is not None else None
        return snap_to_frames(video_frame_times(video) if cached is None else cached, times)

    def read(self, video: Path, times: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
        """(T, H, W, 3) uint8 frames at or before `times`, squashed to `size` (None: the video's own size)."""
        if self.cache is not None:
            return self.cache.read(video, times, size=size)
        return decode_frames(video, times, size=size)

    # -------------------------------------------------------------------------------------- streamed
    def snippets(
        self,
        video: Path,
        samples: np.ndarray,
        num_full: int,
        snippet_frames: int,
        frame_times: np.ndarray,
        batch_frames: int,
    ) -> Iterator[np.ndarray]:
        """(F, H, W, 3) uint8 frames of every snippet, in order. `samples` (S, F): native frame indices of
        each snippet's samples; the first `num_full` snippets are whole (`snippet_frames` long)."""
        if self._cached(video, frame_times):
            self.used["frame_cache"].append(str(video))
            return self._from_cache(video, samples, frame_times, batch_frames)
        self.used["decoded"].append(str(video))
        return self._decoded(video, samples, num_full, snippet_frames, frame_times)

    def _cached(self, video: Path, frame_times: np.ndarray) -> bool:
        if self.cache is None:
            return False
        span = (0.0, float(frame_times[-1]))
        if self.write_cache and not self.cache.has(video, span, size=self.size):
            self.cache.write(video, [span], cache_fps=0, size=self.size)
        return self.cache.has(video, span, size=self.size)

    def _from_cache(self, video, samples, frame_times, batch_frames: int) -> Iterator[np.ndarray]:
        step = max(1, batch_frames // samples.shape[1])  # snippets per cache read
        for first in range(0, len(samples), step):
            chunk = samples[first : first + step]  # (n, F)
            frames = self.cache.read(video, frame_times[chunk.reshape(-1)], size=self.size)
            yield from frames.reshape(*chunk.shape, *frames.shape[1:])

    def _decoded(self, video, samples, num_full, snippet_frames, frame_times) -> Iterator[np.ndarray]:
        if num_full:
            yield from self._stream(video, samples[:num_full], frame_times, num_full * snippet_frames)
        if len(samples) > num_full:  # the short last snippet: one sparse decode of its F samples
            yield decode_frames(video, frame_times[samples[num_full]], size=self.size)

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
