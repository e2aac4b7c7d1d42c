"""`FGCLIPTrainer`: the HF Trainer with our loss, our optimizer groups and our per-step report.

Overrides only what it must. `compute_loss` returns the mean loss of one micro-batch; the Trainer divides
by the accumulation steps exactly once (`loss_is_scaled_for_ga = False`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Sampler
from transformers import Trainer

from fgclip.distributed import gather_rows
from fgclip.losses.objective import FGCLIPObjective
from fgclip.model.modeling import FGCLIPModel
from fgclip.training.report import StepReport

TEMPERATURE_NAMES = ("logit_scale", "logit_scale_finegraind", "logit_scale_hardneg")
_NO_DECAY_MARKERS = ("bias", "norm", "embedding", "class_embedding", "position_embedding")


@dataclass(frozen=True)
class GroupRates:
    text: float
    vision: float
    heads: float
    temperatures: float


class FGCLIPTrainer(Trainer):
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args,
        objective: FGCLIPObjective,
        step_report: StepReport,
        group_rates: GroupRates,
        train_sampler: Sampler | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.step_report = step_report
        self.group_rates = group_rates
        self.train_sampler = train_sampler

    def _get_train_sampler(self, train_dataset=None):
        return (
            self.train_sampler
            if self.train_sampler is not None
            else super()._get_train_sampler(train_dataset)
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        bank = _unwrap(model).memory_bank
        step = self.state.global_step  # optimizer steps done so far
        negatives = bank.read(step) if bank is not None and bank.is_enabled else None
        features = model(**inputs)
        losses, report = self.objective(features, inputs, region_negatives=negatives)
        loss = self.objective.total(losses)
        region_keys = inputs["region_caption_keys"][inputs["region_valid"]]  # (M,)
        if bank is not None:
            report.update(bank.report(region_keys, step))
            if bank.is_enabled or _unwrap(model).config.memory_bank_fill_during_warmup:
                self._write_bank(
                    bank, features, region_keys, inputs["region_labels"][inputs["region_valid"]], step
                )
        self.step_report.add(
            {
                "loss": loss,
                **{f"loss/{name.removesuffix('_loss')}": value for name, value in losses.items()},
                **report,
                "data/dropped_regions": inputs["dropped_regions"].sum(),
                "data/regions_per_clip": inputs["region_valid"].sum(1).float().mean(),
            }
        )
        return (loss, features) if return_outputs else loss

    @staticmethod
    def _write_bank(bank, features, region_keys, region_labels, step: int) -> None:
        """After the loss, detached, gathered from every rank: all ranks append the same rows."""
        if "region_embeds" not in features:
            return
        rows = [
            gather_rows(t.detach(), grad=False)[0]
            for t in (features["region_embeds"], features["region_text_embeds"], region_keys, region_labels)
        ]
        bank.write(*rows, step=step)

    def floating_point_ops(self, inputs) -> int:
        return 0  # HF's estimate counts text tokens only; it would be wrong for video clips

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = model if model is not None else self.model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            optimizer_kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(
                param_groups(_unwrap(model), self.group_rates, self.args.weight_decay), **optimizer_kwargs
            )
        return self.optimizer


def param_groups(model: FGCLIPModel, rates: GroupRates, weight_decay: float) -> list[dict]:
    """Text tower, vision tower, heads, temperatures — each split by weight decay.

    No decay on temperatures, norms, biases and embeddings: decaying them pulls a temperature or a
    LayerNorm gain towards zero, which is never what contrastive training wants.
    """
    groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        kind = _group_of(name)
        decay = (
            kind != "temperatures" and parameter.ndim >= 2 and not any(m in name for m in _NO_DECAY_MARKERS)
        )
        groups.setdefault((kind, decay), []).append(parameter)
    return [
        {
            "name": f"{kind}/{'decay' if decay else 'no_decay'}",
            "params": params,
            "lr": getattr(rates, kind),
            "weight_decay": weight_decay if decay else 0.0,
        }
        for (kind, decay), params in sorted(groups.items())
    ]


def _group_of(name: str) -> str:
    if name.startswith("text_model."):
        return "text"
    if name.startswith("vision_model."):
        return "vision"
    if name in TEMPERATURE_NAMES:
        return "temperatures"
    return "heads"


def _unwrap(model):
    while hasattr(model, "module"):
        model = model.module
    return model
