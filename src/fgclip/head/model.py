"""A small VadCLIP-style (not VadCLIP-exact, see below) anomaly head over per-snippet features (Wu et al., AAAI 2024, "VadCLIP").

    features (B, T, D) --linear--> (B, T, H) + learnable snippet positions (max_len, H)
      -> local temporal transformer: `local_layers` encoder layers whose attention is masked to a window of
         `window` snippets on each side (VadCLIP's "local module": attention inside short windows)
      -> global mixer: VadCLIP's graph branch. Two graph convolutions over all unpadded snippets of the video,
         summed with a residual: a *similarity* graph (adjacency = row softmax of the cosine similarities of the
         snippet states, entries below `similarity_threshold` cut to zero before the softmax normalisation, as
         in VadCLIP's `adj4`) and a *distance* graph (adjacency exp(-|i - j| / distance_sigma), row-normalised:
         near snippets weigh most). Padding never enters an adjacency.
      -> snippet classifier: LayerNorm + MLP -> one logit per snippet; score = sigmoid(logit).

Optional class-level branch (MIL-align): given a (C, D) matrix of L2-normalised text embeddings of class prompts
(row 0 = Normal; the backbone's prompts, in the same space as the features), each snippet state is projected
back to D and compared by cosine similarity: class logits (B, T, C) = scale * normalize(W h) @ prompts^T.

The head returns a dict of tensors and never computes a loss (`fgclip.head.objective` does).

VadCLIP-*style*, not VadCLIP: compared with VadCLIP's published code, the local module attends in a sliding
+-`window` band (VadCLIP: disjoint blocks of 8 snippets); each graph is one graph convolution (VadCLIP: two
layers per graph); the distance kernel is exp(-|i - j| / distance_sigma) with sigma 1 (VadCLIP: exp(-|i - j| / e));
the MIL-align branch is simplified (a projection back to D and a cosine against fixed prompt embeddings, no
learnable prompt context or visual prompt); and padded snippets are masked out of the distance graph, a fix
(left unmasked, padding cost a peer implementation ~0.04 frame AUC). docs/anomaly_head.md lists the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class HeadConfig:
    feature_dim: int
    hidden_dim: int = 128
    max_len: int = 256  # snippets the position table covers (= the training length after pooling)
    local_layers: int = 1
    heads: int = 4
    window: int = 8  # local attention reaches snippets within +-window
    similarity_threshold: float = 0.7
    distance_sigma: float = 1.0
    dropout: float = 0.1
    num_classes: int = 0  # > 0: the MIL-align branch with a (num_classes, feature_dim) prompt matrix
    align_scale: float = 10.0  # cosine -> logits temperature of the MIL-align branch

    def __post_init__(self):
        if self.hidden_dim % self.heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} must be divisible by heads {self.heads}")
        for name in ("feature_dim", "hidden_dim", "max_len", "window"):
            if getattr(self, name) < 1:
                raise ValueError(f"HeadConfig.{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


class GraphMixer(nn.Module):
    """VadCLIP's global branch: a similarity graph and a distance graph convolution, summed, plus a residual."""

    def __init__(self, dim: int, similarity_threshold: float, distance_sigma: float):
        super().__init__()
        self.similarity = nn.Linear(dim, dim)
        self.distance = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.similarity_threshold = similarity_threshold
        self.distance_sigma = distance_sigma

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        pair = valid[:, :, None] & valid[:, None, :]  # (B, T, T)
        unit = F.normalize(x, dim=-1)
        cosine = unit @ unit.transpose(1, 2)  # (B, T, T)
        cosine = cosine.masked_fill(cosine < self.similarity_threshold, 0.0)
        # rows of padded snippets become all -inf; nan_to_num turns their softmax into zeros
        similarity_adj = cosine.masked_fill(~pair, float("-inf")).softmax(-1).nan_to_num(0.0)  # (B, T, T)
        positions = torch.arange(x.shape[1], device=x.device, dtype=x.dtype)
        gap = (positions[:, None] - positions[None, :]).abs()  # (T, T)
        distance_adj = torch.exp(-gap / self.distance_sigma) * pair  # (B, T, T)
        distance_adj = distance_adj / distance_adj.sum(-1, keepdim=True).clamp_min(1e-6)
        mixed = F.gelu(similarity_adj @ self.similarity(x)) + F.gelu(
            distance_adj @ self.distance(x)
        )  # (B, T, H)
        return self.norm(x + mixed)


class AnomalyHead(nn.Module):
    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        h = config.hidden_dim
        self.input = nn.Linear(config.feature_dim, h)
        self.positions = nn.Embedding(config.max_len, h)
        layer = nn.TransformerEncoderLayer(
            h, config.heads, dim_feedforward=2 * h, dropout=config.dropout, batch_first=True, norm_first=True
        )
        self.local = nn.TransformerEncoder(layer, config.local_layers, enable_nested_tensor=False)
        self.mixer = GraphMixer(h, config.similarity_threshold, config.distance_sigma)
        self.classifier = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))
        self.align = nn.Linear(h, config.feature_dim) if config.num_classes else None
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, class_prompts: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """features (B, T, D) padded, lengths (B,) unpadded snippet counts, class_prompts (C, D) normalised."""
        b, t, _ = features.shape
        if t > self.config.max_len:
            raise ValueError(
                f"{t} snippets exceed the head's max_len {self.config.max_len}; pool or chunk first"
            )
        valid = torch.arange(t, device=features.device)[None, :] < lengths[:, None]  # (B, T)
        x = self.input(features) + self.positions.weight[:t]  # (B, T, H)
        x = self.local(x, mask=self._attention_mask(valid))  # (B, T, H)
        x = self.mixer(x, valid)  # (B, T, H)
        logits = self.classifier(x).squeeze(-1).masked_fill(~valid, float("-inf"))  # (B, T)
        out = {"snippet_logits": logits, "snippet_scores": torch.sigmoid(logits), "valid": valid}
        if self.align is not None and class_prompts is not None:
            visual = F.normalize(self.align(x), dim=-1)  # (B, T, D)
            out["class_logits"] = self.config.align_scale * visual @ class_prompts.T  # (B, T, C)
        return out

    def _attention_mask(self, valid: torch.Tensor) -> torch.Tensor:
        """(B * heads, T, T) bool, True = may NOT attend: keys outside the window or padded.

        Every snippet may attend to itself, so no row is fully masked (a padded query would otherwise give
        NaN, and 0-weight x NaN values reach the real snippets in the next layer).
        """
        t = valid.shape[1]
        positions = torch.arange(t, device=valid.device)
        outside = (positions[:, None] - positions[None, :]).abs() > self.config.window  # (T, T)
        blocked = outside[None] | ~valid[:, None, :]  # (B, T, T)
        blocked = blocked & ~torch.eye(t, dtype=torch.bool, device=valid.device)
        return blocked.repeat_interleave(self.config.heads, dim=0)  # (B * heads, T, T)
