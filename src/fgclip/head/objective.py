"""VadCLIP's weakly supervised objective: multiple-instance learning over the snippets of a video.

A video is a bag of snippets with one label. Its score is the mean of its k highest snippet scores,
k = floor(T / 16) + 1 where T is the video's *unpadded* snippet count in the batch (after pooling to the
training length, as VadCLIP's `lengths`), so padding never counts and long videos pool more evidence.

- `mil_loss`: binary cross-entropy between the top-k mean score and the video label (VadCLIP's `CLAS2`).
- `mil_align_loss`: the class-level branch (VadCLIP's `CLASM`): per class, the top-k mean of the snippets'
  class logits is the video's class logit; cross-entropy against the video's class (0 = Normal).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TOPK_DIVISOR = 16  # VadCLIP: k = int(length / 16 + 1)


def topk_count(lengths: torch.Tensor) -> torch.Tensor:
    """(B,) unpadded snippet counts -> (B,) k = floor(T / 16) + 1 (never more than T)."""
    return torch.minimum(lengths // TOPK_DIVISOR + 1, lengths)


def topk_mean(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T) or (B, T, C) per-snippet values -> (B,) or (B, C) mean of the k largest unpadded ones."""
    squeeze = values.dim() == 2
    values = values.unsqueeze(-1) if squeeze else values  # (B, T, C)
    t = values.shape[1]
    valid = torch.arange(t, device=values.device)[None, :] < lengths[:, None]  # (B, T)
    ranked = values.masked_fill(~valid[..., None], float("-inf")).sort(dim=1, descending=True).values
    k = topk_count(lengths)  # (B,)
    taken = torch.arange(t, device=values.device)[None, :] < k[:, None]  # (B, T): the first k ranks
    summed = ranked.masked_fill(~taken[..., None], 0.0).sum(1)  # (B, C)
    mean = summed / k[:, None].to(values.dtype)
    return mean.squeeze(-1) if squeeze else mean


def mil_loss(snippet_scores: torch.Tensor, lengths: torch.Tensor, abnormal: torch.Tensor) -> torch.Tensor:
    """BCE of the top-k mean snippet score (B, T) against the video labels (B,) in {0, 1}."""
    video_scores = topk_mean(snippet_scores, lengths).clamp(1e-6, 1 - 1e-6)  # (B,)
    return F.binary_cross_entropy(video_scores, abnormal.to(video_scores.dtype))


def mil_align_loss(
    class_logits: torch.Tensor, lengths: torch.Tensor, class_index: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the top-k mean class logits (B, T, C) against the video classes (B,)."""
    return F.cross_entropy(topk_mean(class_logits, lengths), class_index)
