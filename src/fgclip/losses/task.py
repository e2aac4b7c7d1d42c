"""The alignment task: one training forward with its memory-bank cycle, in one place.

    task = AlignmentTask(FGCLIPObjective(weights), MemoryBankOptions(size=128, warmup_steps=50))
    task.attach_bank(model)                                  # a new, empty, disabled bank of this run's size
    out = task(model, batch, step)                           # step = optimizer steps done so far
    out.loss.backward()

A call (open_clip's training-forward shape, plus the bank): switch the bank on once `step` reaches the
warm-up; read its usable entries; run the model; run the objective with the entries as extra region
negatives; then write this micro-batch's region rows — detached, gathered from every rank, after the loss
so a row is never its own negative — and report the bank's state. The trainer, the tests and the
benchmarks all train through this object, so what is tested is what runs.

Two freshness options (both off by default):
- `bank.fresh_text = N`: the bank also stores its entries' caption token ids; each call re-encodes the
  newest N usable ones with the current text tower, with gradient, and they replace those entries' stored
  (stale) text embeddings in the region -> text direction (ordinary negatives). The bank is identical on
  every rank, so every rank re-encodes the same rows.
- `bank.momentum = m`: the region image embeddings written to the bank come from an EMA copy of the vision
  tower + roi_projection (`fgclip.losses.momentum`), updated at the first call after each optimizer step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fgclip.distributed import gather_rows, is_rank_zero
from fgclip.losses.contrastive import RegionNegatives
from fgclip.losses.label_prompts import LabelPrompts
from fgclip.losses.memory_bank import MemoryBankOptions, RegionMemoryBank
from fgclip.losses.momentum import MomentumEncoder
from fgclip.losses.objective import FGCLIPObjective

logger = logging.getLogger(__name__)


@dataclass
class TaskOutput:
    loss: torch.Tensor  # the weighted total, what backward() is called on
    losses: dict[str, torch.Tensor]  # each term, `<name>_loss`
    report: dict[str, torch.Tensor]  # everything else that is logged (bank state, negatives, temperatures)
    features: dict[str, torch.Tensor]
    finite: bool  # the total is finite (a non-finite micro-batch writes nothing to the bank)


class AlignmentTask:
    def __init__(
        self,
        objective: FGCLIPObjective,
        bank: MemoryBankOptions | None = None,
        label_prompts: LabelPrompts | None = None,
    ):
        self.objective = objective
        self.bank_options = bank if bank is not None else MemoryBankOptions()
        self.bank: RegionMemoryBank | None = None
        needs = [t.name for t in objective.enabled if "label_prompts" in t.inputs]
        if needs and label_prompts is None:
            raise ValueError(
                f"loss term(s) {needs} need a label prompt set (loss.video_label_prompts, else eval.prompts)"
            )
        self.label_prompts = label_prompts if needs else None

    def attach_bank(self, model: nn.Module) -> RegionMemoryBank | None:
        """Put a new, empty, disabled bank of this run's size into the model's `memory_bank` slot.

        Called once for every run, before a resume loads its checkpoint into the model (which then restores
        the bank's contents). A model loaded from a finished run never carries that run's bank over.
        """
        if not self.bank_options.enabled:
            model.memory_bank = self.bank = None
            return None
        dim = model.config.projection_dim
        self.bank = RegionMemoryBank.from_options(dim, self.bank_options).to(_device_of(model))
        if self.bank_options.momentum is not None:  # the shadow starts as the model's weights now
            self.bank.momentum_encoder = MomentumEncoder(_core(model), self.bank_options.momentum)
        model.memory_bank = self.bank
        return self.bank

    # --------------------------------------------------------------------------------------------- forward
    def __call__(self, model: nn.Module, batch: dict, step: int) -> TaskOutput:
        """One micro-batch of optimizer step `step + 1` (`step` optimizer steps are done)."""
        bank = self.bank
        if bank is not None:
            self._maybe_switch_on(bank, step)
            if bank.momentum_encoder is not None:
                bank.momentum_encoder.update(_core(model), step)
        features = self._forward(model, batch, step)
        negatives, fresh = None, None
        if bank is not None and bank.is_enabled:
            negatives, fresh = self._read(model, bank, step)
        losses, report = self.objective(features, batch, region_negatives=negatives)
        loss = self.objective.total(losses)
        finite = bool(torch.isfinite(loss.detach()))
        if bank is not None:
            region_keys = batch["region_caption_keys"][batch["region_valid"]]  # (M,)
            report.update(bank.report(region_keys, step, fresh))
            if bank.is_enabled or self.bank_options.fill_during_warmup:
                self._write(bank, model, features, batch, step, finite)
        return TaskOutput(loss, losses, report, features, finite)

    def _forward(self, model: nn.Module, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """The model's features; with a label prompt set, its prompts are encoded in the same forward (so DDP
        sees every parameter they use)."""
        if self.label_prompts is None:
            return model(**batch)
        ids, mask, classes = self.label_prompts.for_step(step)
        device = batch["pixel_values"].device
        features = model(**batch, label_prompt_ids=ids.to(device), label_prompt_mask=mask.to(device))
        features["label_prompt_classes"] = classes.to(device)  # (P',)
        return features

    def _read(
        self, model: nn.Module, bank: RegionMemoryBank, step: int
    ) -> tuple[RegionNegatives, torch.Tensor | None]:
        """The usable entries, the newest `fresh_text` of them with their captions re-encoded now.

        Returns the negatives and the positions (within them) of the fresh rows (None without fresh_text).
        """
        negatives = bank.read(step)
        if not self.bank_options.fresh_text:
            return negatives, None
        fresh = bank.newest(step, self.bank_options.fresh_text)  # (n,)
        if fresh.numel() == 0:
            return negatives, fresh
        ids, mask = (t[fresh] for t in bank.texts(step))  # (n, text_length)
        used = int(mask.any(0).nonzero().max()) + 1  # drop all-padding columns (after every EOS: no effect)
        embeds = F.normalize(_core(model).get_text_features(ids[:, :used], mask[:, :used]), dim=-1)  # (n, D)
        stale = negatives.text_embeds.to(embeds.dtype)  # (U, D)
        text = stale.index_put((fresh,), embeds)  # out of place: the fresh rows carry gradient
        return RegionNegatives(negatives.image_embeds, text, negatives.caption_keys), fresh

    def _maybe_switch_on(self, bank: RegionMemoryBank, step: int) -> None:
        """With warm-up W the first W updates never see the bank; update W+1 is the first trained with it."""
        if bank.is_enabled or step < self.bank_options.warmup_steps:
            return
        bank.enable()
        if is_rank_zero():
            logger.info(
                "[memory bank] enabled from step %d (after %d warm-up steps): capacity %d, filled %d",
                step + 1,  # the step number of the console line and metrics.jsonl row it first shapes
                step,
                bank.capacity,
                bank.filled(),
            )

    def _write(
        self,
        bank: RegionMemoryBank,
        model: nn.Module,
        features: dict,
        batch: dict,
        step: int,
        loss_is_finite: bool,
    ) -> None:
        """Detached rows gathered from every rank: all ranks append the same rows.

        A rank whose loss is non-finite contributes no rows, and rows with a non-finite value are dropped
        before the gather, so the bank never holds a NaN. Every rank still joins the gather.
        """
        if "region_embeds" not in features:
            return
        valid = batch["region_valid"]
        if bank.momentum_encoder is not None:
            image = bank.momentum_encoder.region_embeds(_core(model), batch)  # (M, D), the EMA encoder's
        else:
            image = features["region_embeds"].detach()  # (M, D)
        text = features["region_text_embeds"].detach()  # (M, D)
        columns = [image, text, batch["region_caption_keys"][valid], batch["region_labels"][valid]]
        if bank.stores_text:
            columns += self._caption_rows(batch, bank.text_length)  # 2 x (M, text_length)
        keep = torch.isfinite(image).all(-1) & torch.isfinite(text).all(-1)  # (M,)
        if not loss_is_finite:
            keep = torch.zeros_like(keep)
        image_rows, text_rows, key_rows, label_rows, *caption_rows = (
            gather_rows(t[keep], grad=False)[0] for t in columns
        )
        captions = (
            dict(zip(("caption_ids", "caption_mask"), caption_rows, strict=True)) if caption_rows else {}
        )
        bank.write(image_rows, text_rows, key_rows, label_rows, step=step, **captions)

    @staticmethod
    def _caption_rows(batch: dict, text_length: int) -> list[torch.Tensor]:
        """The valid regions' caption ids and mask, padded to the bank's fixed length (a fixed gather shape)."""
        valid = batch["region_valid"]
        ids, mask = batch["region_caption_ids"][valid], batch["region_caption_mask"][valid]  # (M, L)
        length = ids.shape[-1]
        if length > text_length:
            raise ValueError(
                f"region captions are {length} tokens but bank.text_length is {text_length}: raise "
                "bank.text_length to the region caption length (77, CLIP's table) so banked captions fit"
            )
        return [F.pad(ids, (0, text_length - length)), F.pad(mask.long(), (0, text_length - length))]


def _core(model: nn.Module) -> nn.Module:
    """The model inside DDP (`.module`) / peft (`get_base_model()`) wrappers: fresh texts and the momentum
    encoder use its methods and weights directly (gradients still reach DDP's hooks on the same parameters)."""
    while hasattr(model, "module"):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
