"""How a snippet's frames become the embedding its zero-shot score is read from (`eval.snippet_pooling`).

Every rule keeps the frame-level protocol: one score per 16-frame snippet, repeated over its native frames.
They differ in what the temporal module sees:

- `frame`: nothing. Each of the snippet's F sampled frames is scored on its own (CLIP's per-frame protocol),
  and the snippet's class probabilities are the mean of its frames'.
- `snippet`: the snippet's F frames (~0.5 s at 30 fps), pooled by the temporal module.
- `window`: `window_frames` frames spread over `window_s` seconds centred on the snippet (shifted to stay
  inside the video; the whole video when it is shorter), pooled by the temporal module -- the time scale it
  was trained on (training pools T frames over a clip span of seconds). The frames are the nearest of the
  already-embedded snippet samples, so a window costs one temporal-module call, no decoding.

The default is chosen by `benchmarks/zeroshot_pooling.py` (README, "Zero-shot scoring").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SNIPPET_POOLINGS = ("frame", "snippet", "window")
DEFAULT_POOLING = "snippet"


@dataclass(frozen=True)
class SnippetPooling:
    rule: str = DEFAULT_POOLING
    window_s: float = 3.0  # `window`: seconds of video pooled per snippet (about a training clip's span)
    window_frames: int = 8  # `window`: frames pooled per snippet (the training clips' `data.num_frames`)

    def __post_init__(self):
        if self.rule not in SNIPPET_POOLINGS:
            raise ValueError(
                f"unknown snippet pooling {self.rule!r} (choose from {', '.join(SNIPPET_POOLINGS)})"
            )
        if not self.window_s > 0 or self.window_frames < 1:
            raise ValueError(
                f"window pooling needs window_s > 0 and window_frames >= 1, got {self.window_s}, {self.window_frames}"
            )


def window_sample_indices(
    sample_times: np.ndarray, duration_s: float, window_s: float, frames: int
) -> np.ndarray:
    """(S, F) snippet sample times -> (S, frames) indices into the flattened samples: for each snippet, the
    samples nearest to `frames` bin centres of a `window_s` window centred on the snippet, kept inside
    [0, duration_s]."""
    flat = sample_times.reshape(-1)  # (S*F,) ascending
    centres = sample_times.mean(axis=1)  # (S,)
    width = min(window_s, duration_s)
    starts = np.clip(centres - width / 2, 0.0, duration_s - width)  # (S,)
    targets = starts[:, None] + (np.arange(frames) + 0.5) * width / frames  # (S, frames)
    if len(flat) == 1:  # a one-frame video: every window is that frame
        return np.zeros(targets.shape, dtype=np.int64)
    right = np.clip(np.searchsorted(flat, targets), 1, len(flat) - 1)  # first sample after each target
    nearer_left = (targets - flat[right - 1]) <= (flat[right] - targets)
    return np.where(nearer_left, right - 1, right)


@torch.no_grad()
def pooled_embeddings(model, snippets, pooling: SnippetPooling | None = None) -> np.ndarray:
    """The embeddings a video's snippet scores are read from: (S, D) clip embeddings (`snippet`, `window`)
    or (S, F, D) frame embeddings (`frame`; the scorer averages their probabilities)."""
    pooling = pooling or SnippetPooling()
    if pooling.rule == "snippet":
        return snippets.embeds
    if pooling.rule == "frame":
        return snippets.frame_embeds
    indices = window_sample_indices(
        snippets.sample_times, snippets.duration_s, pooling.window_s, pooling.window_frames
    )  # (S, W)
    weight = next(model.parameters())
    flat = torch.from_numpy(snippets.frame_embeds.reshape(-1, snippets.frame_embeds.shape[-1]))  # (S*F, D)
    flat, device = flat.to(weight.device, weight.dtype), weight.device
    windows = flat[torch.from_numpy(indices).to(device)]  # (S, W, D)
    mask = torch.ones(windows.shape[:2], dtype=torch.bool, device=device)
    return model.clip_embeddings(windows, mask).float().cpu().numpy()  # (S, D)
