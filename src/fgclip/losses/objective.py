"""The training objective: features + batch -> (losses, report). Losses are named `*_loss`, summed once.

Which terms exist, and what each computes, is the table in `fgclip.losses.terms`; the objective only runs
the terms with a non-zero weight and weights them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from fgclip.data.batch import Batch
from fgclip.losses.contrastive import RegionNegatives
from fgclip.losses.terms import LOSS_TERMS, LossTerm


class FGCLIPObjective:
    """Runs the enabled loss terms on a model's features. A term with weight 0 is not computed.

    `weights` maps term names to weights (`{"global": 1.0, "region": 1.0, ...}`); a term missing from it
    takes its table default. Unknown names are refused, so a typo cannot silently disable a term.
    """

    def __init__(self, weights: Mapping[str, float], terms: tuple[LossTerm, ...] = LOSS_TERMS):
        unknown = set(weights) - {t.name for t in terms}
        if unknown:
            raise ValueError(f"unknown loss term(s) {sorted(unknown)}; terms: {[t.name for t in terms]}")
        self.terms = terms
        self.weights = {t.name: float(weights.get(t.name, t.default_weight)) for t in terms}

    @property
    def enabled(self) -> list[LossTerm]:
        return [term for term in self.terms if self.weights[term.name]]

    def __call__(
        self,
        features: dict[str, torch.Tensor],
        batch: Batch,
        region_negatives: RegionNegatives | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        losses: dict[str, torch.Tensor] = {}
        report: dict[str, torch.Tensor] = {}
        for term in self.enabled:
            losses[term.loss_key], extra = term.compute(features, batch, region_negatives)
            report.update(extra)
        temperatures = dict.fromkeys(t.temperature for t in self.enabled)  # shared ones once, in table order
        report.update({f"temperature/{name}": features[name].detach() for name in temperatures})
        return losses, report

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        weight = {term.loss_key: self.weights[term.name] for term in self.terms}
        return sum(weight[name] * value for name, value in losses.items())


def loss_weights(section) -> dict[str, float]:
    """`{term name: weight}` from an object with `<name>_weight` attributes (the config's loss section)."""
    return {term.name: getattr(section, term.weight_field) for term in LOSS_TERMS}
