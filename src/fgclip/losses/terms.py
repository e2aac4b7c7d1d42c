"""The one table of loss terms: what each term computes, the temperature it uses, the heads it trains.

Everything that lists loss terms, heads or temperatures reads this table: the objective (which terms run
and how they are weighted), the config's `loss.<name>_weight` fields, the trainer's parameter groups, LoRA
(what trains in full next to the adapters), loading (temperatures a checkpoint may lack), `fgclip inspect`
(the heads table) and `fgclip doctor` / `fgclip train` (a frozen head that an enabled term needs).

A term is named once (`region`) and every other name is derived: the loss key `region_loss`, the logged
value `loss/region`, the config field `loss.region_weight`. A temperature has one name everywhere: the
model parameter (a log-scale, e.g. `logit_scale_finegraind`, FG-CLIP's spelling), the feature key holding
its multiplier `exp(logit_scale_finegraind)`, and the logged `temperature/logit_scale_finegraind`.

To add a term: write its `compute` function and append a `LossTerm` to `LOSS_TERMS`. Nothing else. A term
that needs settings besides its weight declares them in `options` (each becomes a `loss.<field>` of the
config); a term whose inputs are not in the batch names them in `inputs` (`"label_prompts"`: the alignment
task encodes the label prompt set in the model's forward, see `fgclip.losses.label_prompts`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from fgclip.losses.contrastive import (
    RegionNegatives,
    global_loss,
    hard_negative_loss,
    region_loss,
    video_label_loss,
)

Features = dict[str, torch.Tensor]
TermResult = tuple[torch.Tensor, dict[str, torch.Tensor]]

# Projection heads of the model (DESIGN §4); with the temporal module, the non-tower trainable modules.
PROJECTION_HEADS = ("visual_projection", "text_projection", "roi_projection", "text_filip_projection")
TEMPORAL_MODULE = "temporal"


@dataclass(frozen=True)
class TermOption:
    """A setting of one loss term besides its weight: config field `loss.<field>`."""

    field: str
    type: object  # the config field's annotation
    default: object
    help: str


@dataclass(frozen=True)
class LossTerm:
    name: str
    temperature: str  # log-temperature parameter of the model; features[temperature] is its exp()
    heads: tuple[str, ...]  # model modules the term trains besides the towers (a frozen one is refused)
    features: tuple[str, ...]  # feature keys the term reads
    compute: Callable[[Features, dict, RegionNegatives | None], TermResult]
    default_weight: float = 1.0
    options: tuple[TermOption, ...] = ()
    inputs: tuple[str, ...] = ()  # inputs beyond the batch the alignment task must provide
    reads_bank: bool = False  # its negatives include the memory bank's (the bank serves it)

    @property
    def weight_field(self) -> str:
        return f"{self.name}_weight"

    @property
    def loss_key(self) -> str:
        return f"{self.name}_loss"

    @property
    def log_key(self) -> str:
        return f"loss/{self.name}"


def _global(features: Features, batch: dict, _negatives: RegionNegatives | None) -> TermResult:
    return global_loss(
        features["clip_embeds"], features["caption_embeds"], batch["caption_keys"], features["logit_scale"]
    )


def _region(features: Features, batch: dict, negatives: RegionNegatives | None) -> TermResult:
    region_keys = batch["region_caption_keys"][batch["region_valid"]]  # (M,)
    return region_loss(
        features["region_embeds"],
        features["region_text_embeds"],
        region_keys,
        features["logit_scale_finegraind"],
        negatives,
    )


def _hard_negative(features: Features, batch: dict, _negatives: RegionNegatives | None) -> TermResult:
    return hard_negative_loss(
        features["region_embeds"],
        features["region_text_embeds"],
        features["hard_negative_embeds"],
        features["hard_negative_present"],
        features["logit_scale_hardneg"],
    )


def _video_label(features: Features, batch: dict, _negatives: RegionNegatives | None) -> TermResult:
    return video_label_loss(
        features["clip_embeds"],
        features["label_prompt_embeds"],
        features["label_prompt_classes"],
        batch["clip_classes"],
        features["logit_scale"],
    )


LOSS_TERMS: tuple[LossTerm, ...] = (
    LossTerm(
        "global",
        temperature="logit_scale",
        heads=("visual_projection", "text_filip_projection", TEMPORAL_MODULE),
        features=("clip_embeds", "caption_embeds"),
        compute=_global,
    ),
    LossTerm(
        "region",
        temperature="logit_scale_finegraind",
        heads=("roi_projection", "text_projection"),
        features=("region_embeds", "region_text_embeds"),
        compute=_region,
        reads_bank=True,
    ),
    LossTerm(
        "hard_negative",
        temperature="logit_scale_hardneg",
        heads=("roi_projection", "text_projection"),
        features=("region_embeds", "region_text_embeds", "hard_negative_embeds", "hard_negative_present"),
        compute=_hard_negative,
    ),
    # DESIGN §5 "Video-label loss": each clip against the label prompt set (normal vs each anomaly class),
    # scored as the zero-shot evaluator scores it (`softmax_sum`, the global head and temperature). Off by
    # default until the ablation (issue 24) shows what it buys.
    LossTerm(
        "video_label",
        temperature="logit_scale",
        heads=("visual_projection", "text_filip_projection", TEMPORAL_MODULE),
        features=("clip_embeds", "label_prompt_embeds", "label_prompt_classes"),
        compute=_video_label,
        default_weight=0.0,
        options=(
            TermOption(
                "video_label_prompts",
                str | None,
                None,
                "label prompt set (built-in name or JSON file, as eval.prompts); default: eval.prompts",
            ),
            TermOption(
                "video_label_prompts_per_class",
                int,
                16,  # the synthetic set's 945 prompts cost 3.3 s per stand-in step (fwd+bwd, 1 thread); 64: 0.1 s
                "prompts of each class encoded per step (a draw that depends on the step only); 0: every prompt",
            ),
        ),
        inputs=("label_prompts",),
    ),
)

# The model's log-temperatures, in table order (each term has one; terms may share one).
TEMPERATURES: tuple[str, ...] = tuple(dict.fromkeys(term.temperature for term in LOSS_TERMS))
# Trained in full next to LoRA adapters: every head, the temporal module, every temperature.
FULLY_TRAINED = (*PROJECTION_HEADS, TEMPORAL_MODULE, *TEMPERATURES)


def bank_terms(terms: tuple[LossTerm, ...] = LOSS_TERMS) -> tuple[LossTerm, ...]:
    """The terms the memory bank serves (a bank with none of them enabled feeds nothing)."""
    return tuple(term for term in terms if term.reads_bank)


def term_named(name: str, terms: tuple[LossTerm, ...] = LOSS_TERMS) -> LossTerm:
    for term in terms:
        if term.name == name:
            return term
    raise KeyError(f"no loss term {name!r} (terms: {', '.join(t.name for t in terms)})")
