"""Clip embedding from frame embeddings: a small masked transformer decides how much each frame counts."""

from __future__ import annotations

import torch
from torch import nn


class TemporalPooler(nn.Module):
    """Attention pooling of frame embeddings, with weights read from their temporal context.

    The clip embedding is a convex combination of the (projected) frame embeddings; the masked transformer
    only produces the weights. Two consequences, both on purpose: a clip with one real frame is exactly
    that frame's embedding (the image case, T=1), and at initialisation (zero score head) it is the mean
    of its frames, so a pretrained CLIP's zero-shot behaviour survives the new module.
    """

    def __init__(self, dim: int, num_layers: int, num_heads: int, max_frames: int):
        super().__init__()
        self.max_frames = max_frames
        self.position_embedding = nn.Parameter(torch.zeros(max_frames, dim))
        layer = nn.TransformerEncoderLayer(
            dim, num_heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.score = nn.Linear(dim, 1)

    def forward(self, frame_embeds: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """frame_embeds (B, T, D), frame_mask (B, T) bool -> clip embeddings (B, D)."""
        num_frames = frame_embeds.shape[1]
        if num_frames > self.max_frames:
            raise ValueError(
                f"{num_frames} frames per clip exceed max_frames={self.max_frames} of the temporal module"
            )
        context = self.encoder(
            frame_embeds + self.position_embedding[:num_frames], src_key_padding_mask=~frame_mask
        )  # (B, T, D)
        scores = self.score(context).squeeze(-1).float()  # (B, T)
        scores = scores.masked_fill(~frame_mask, float("-inf"))
        weights = scores.softmax(dim=-1).to(frame_embeds.dtype)  # (B, T)
        return torch.einsum("bt,btd->bd", weights, frame_embeds)
