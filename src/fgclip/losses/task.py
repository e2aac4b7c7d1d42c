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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from fgclip.distributed import gather_rows, is_rank_zero
from fgclip.losses.memory_bank import MemoryBankOptions, RegionMemoryBank
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
    def __init__(self, objective: FGCLIPObjective, bank: MemoryBankOptions | None = None):
        self.objective = objective
        self.bank_options = bank if bank is not None else MemoryBankOptions()
        self.bank: RegionMemoryBank | None = None

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
        model.memory_bank = self.bank
        return self.bank

    # --------------------------------------------------------------------------------------------- forward
    def __call__(self, model: nn.Module, batch: dict, step: int) -> TaskOutput:
        """One micro-batch of optimizer step `step + 1` (`step` optimizer steps are done)."""
        bank = self.bank
        if bank is not None:
            self._maybe_switch_on(bank, step)
        negatives = bank.read(step) if bank is not None and bank.is_enabled else None
        features = model(**batch)
        losses, report = self.objective(features, batch, region_negatives=negatives)
        loss = self.objective.total(losses)
        finite = bool(torch.isfinite(loss.detach()))
        if bank is not None:
            region_keys = batch["region_caption_keys"][batch["region_valid"]]  # (M,)
            report.update(bank.report(region_keys, step))
            if bank.is_enabled or self.bank_options.fill_during_warmup:
                self._write(bank, features, batch, step, finite)
        return TaskOutput(loss, losses, report, features, finite)

    def _maybe_switch_on(self, bank: RegionMemoryBank, step: int) -> None:
        """With warm-up W the first W updates never see the bank; update W+1 is the first trained with it."""
        if bank.is_enabled or step < self.bank_options.warmup_steps:
            return
        bank.enable()
        if is_rank_zero():
            logger.info(
                "[memory bank] enabled at optimizer step %d: capacity %d, filled %d",
                step,
                bank.capacity,
                bank.filled(),
            )

    @staticmethod
    def _write(bank: RegionMemoryBank, features: dict, batch: dict, step: int, loss_is_finite: bool) -> None:
        """Detached rows gathered from every rank: all ranks append the same rows.

        A rank whose loss is non-finite contributes no rows, and rows with a non-finite value are dropped
        before the gather, so the bank never holds a NaN. Every rank still joins the gather.
        """
        if "region_embeds" not in features:
            return
        valid = batch["region_valid"]
        image = features["region_embeds"].detach()  # (M, D)
        text = features["region_text_embeds"].detach()  # (M, D)
        keys = batch["region_caption_keys"][valid]  # (M,)
        labels = batch["region_labels"][valid]  # (M,)
        keep = torch.isfinite(image).all(-1) & torch.isfinite(text).all(-1)  # (M,)
        if not loss_is_finite:
            keep = torch.zeros_like(keep)
        rows = [gather_rows(t[keep], grad=False)[0] for t in (image, text, keys, labels)]
        bank.write(*rows, step=step)


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
