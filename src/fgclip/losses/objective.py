"""The training objective: features + batch -> (losses, report). Losses are named `*_loss`, summed once."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fgclip.data.batch import Batch
from fgclip.losses.contrastive import RegionNegatives, global_loss, hard_negative_loss, region_loss


@dataclass(frozen=True)
class LossWeights:
    global_weight: float = 1.0
    region_weight: float = 1.0
    hard_negative_weight: float = 1.0


class FGCLIPObjective:
    """Runs the enabled loss terms on a model's features. A term with weight 0 is not computed."""

    def __init__(self, weights: LossWeights):
        self.weights = weights

    def __call__(
        self,
        features: dict[str, torch.Tensor],
        batch: Batch,
        region_negatives: RegionNegatives | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        losses: dict[str, torch.Tensor] = {}
        report: dict[str, torch.Tensor] = {}
        if self.weights.global_weight:
            losses["global_loss"], extra = global_loss(
                features["clip_embeds"],
                features["caption_embeds"],
                batch["caption_keys"],
                features["logit_scale"],
            )
            report.update(extra)
        region_keys = batch["region_caption_keys"][batch["region_valid"]]  # (M,)
        if self.weights.region_weight:
            losses["region_loss"], extra = region_loss(
                features["region_embeds"],
                features["region_text_embeds"],
                region_keys,
                features["logit_scale_region"],
                region_negatives,
            )
            report.update(extra)
        if self.weights.hard_negative_weight:
            losses["hard_negative_loss"], extra = hard_negative_loss(
                features["region_embeds"],
                features["region_text_embeds"],
                features["hard_negative_embeds"],
                features["hard_negative_present"],
                features["logit_scale_hard_negative"],
            )
            report.update(extra)
        report.update(
            {f"temperature/{name}": value.detach() for name, value in _temperatures(features).items()}
        )
        return losses, report

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        weight = {
            "global_loss": self.weights.global_weight,
            "region_loss": self.weights.region_weight,
            "hard_negative_loss": self.weights.hard_negative_weight,
        }
        return sum(weight[name] * value for name, value in losses.items())


def _temperatures(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        "global": features["logit_scale"],
        "region": features["logit_scale_region"],
        "hard_negative": features["logit_scale_hard_negative"],
    }
