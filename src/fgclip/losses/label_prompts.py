"""The label prompt set of the video-label loss, tokenized once: what the alignment task encodes each step.

The prompts are a zero-shot prompt set (`fgclip.evaluation.zeroshot.PromptSet`: class 0 is Normal, then
each anomaly class), tokenized as global captions, because the term scores clip embeddings as the zero-shot
evaluator does (global head). With `per_class = n > 0`, each step encodes at most n prompts of each class,
a draw that depends on the step only (the same on every rank, and again on resume).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LabelPrompts:
    classes: tuple[str, ...]  # class names; index 0 is Normal
    ids: torch.Tensor  # (P, L) long: prompt tokens
    mask: torch.Tensor  # (P, L) long
    prompt_classes: torch.Tensor  # (P,) long: class index of each prompt
    per_class: int = 0  # prompts of each class per step; 0: all (the config's default is 16, see terms.py)

    def __post_init__(self):
        if self.per_class < 0:
            raise ValueError(f"loss.video_label_prompts_per_class must be >= 0, got {self.per_class}")
        present = set(self.prompt_classes.tolist())
        lacking = [name for index, name in enumerate(self.classes) if index not in present]
        if lacking:
            raise ValueError(f"label prompt set: class(es) {lacking} have no prompt")

    def for_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids (P', L), mask (P', L), prompt_classes (P',)) of the prompts encoded at optimizer step `step`."""
        if not self.per_class:
            return self.ids, self.mask, self.prompt_classes
        generator = torch.Generator().manual_seed(int(step))
        chosen = []
        for index in range(len(self.classes)):
            rows = (self.prompt_classes == index).nonzero().squeeze(1)  # (n_c,)
            order = torch.randperm(rows.numel(), generator=generator)[: self.per_class]
            chosen.append(rows[order.sort().values])
        rows = torch.cat(chosen)  # (P',)
        used = int(self.mask[rows].any(0).nonzero().max()) + 1  # drop all-padding columns
        return self.ids[rows, :used], self.mask[rows, :used], self.prompt_classes[rows]
