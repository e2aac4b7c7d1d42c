"""Zero-shot classification of clip / region embeddings against a prompt set (normal + anomaly classes).

A prompt set is JSON `{"normal": [str, ...], "anomaly": {class: [str, ...]}, "description"?: str}`. Built-in
sets ship with the package: `ucf-crime` (UCF-Crime's 13 classes) and `msad` (MSAD's 11 classes); any other
value is read as a file path. The classes are `("Normal", *anomaly classes)`; class 0 is always Normal.

Two scoring rules turn an embedding into class probabilities; the anomaly score is the probability mass of
the anomaly classes (summed directly in float64, never as `1 - p_normal`, which saturates to ties):

- `softmax_sum` (default): softmax over every prompt, each class's mass summed. The prompts that match the
  scene best dominate; a class with more prompts gets more prior mass.
- `ensemble`: CLIP's prompt ensembling -- each class is the re-normalised mean of its normalised prompt
  embeddings; softmax over the classes, so every class weighs the same however many prompts it has.

Both use the model's own temperature for the head: `logit_scale` for clip embeddings (global captions,
`text_filip_projection`), `logit_scale_finegraind` for region embeddings (region captions, `text_projection`).
Measured on the synthetic demo (seed 0, 300 steps; docs/evaluation.md): frame AUC 0.701 / AP 0.435 with
`softmax_sum`, 0.685 / 0.501 with `ensemble`. The default is `softmax_sum` because the demo's acceptance
figure is AUC (>= 0.70) and the synthetic prompts name the scene's objects: ensembling averages over every
object combination, so its class embeddings match no scene well. On prompt sets of generic class
descriptions (the built-in UCF-Crime / MSAD sets) `ensemble` is the usual CLIP choice; measure both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from fgclip.data.text import CaptionTokenizer
from fgclip.evaluation.anomaly import NORMAL_CLASS

SCORING_RULES = ("softmax_sum", "ensemble")
DEFAULT_SCORING = "softmax_sum"
BUILTIN_PROMPT_SETS = {"ucf-crime": "ucf_crime.json", "msad": "msad.json"}
HEADS = ("clip", "region")


@dataclass(frozen=True)
class PromptSet:
    normal: tuple[str, ...]
    anomaly: dict[str, tuple[str, ...]]  # class -> prompts
    source: str = "<memory>"

    @property
    def classes(self) -> tuple[str, ...]:
        return (NORMAL_CLASS, *self.anomaly)

    def texts(self) -> tuple[list[str], list[int]]:
        """Every prompt (normal first) and the class index of each."""
        texts, classes = list(self.normal), [0] * len(self.normal)
        for index, prompts in enumerate(self.anomaly.values(), 1):
            texts += prompts
            classes += [index] * len(prompts)
        return texts, classes

    @classmethod
    def from_dict(cls, data, source: str) -> PromptSet:
        if not isinstance(data, dict):
            raise ValueError(f"{source}: a prompt set is a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"normal", "anomaly", "description"}
        if unknown:
            raise ValueError(
                f"{source}: unknown key(s) {sorted(unknown)} (keys: normal, anomaly, description)"
            )
        normal, anomaly = data.get("normal"), data.get("anomaly")
        if not _prompt_list(normal):
            raise ValueError(f"{source}: 'normal' must be a non-empty list of non-empty strings")
        if not isinstance(anomaly, dict) or not anomaly:
            raise ValueError(f"{source}: 'anomaly' must be a non-empty mapping of class -> list of prompts")
        for name, prompts in anomaly.items():
            if name.lower() == NORMAL_CLASS.lower():
                raise ValueError(f"{source}: anomaly class {name!r} clashes with the normal class")
            if not _prompt_list(prompts):
                raise ValueError(
                    f"{source}: anomaly class {name!r} needs a non-empty list of non-empty strings"
                )
        return cls(tuple(normal), {k: tuple(v) for k, v in anomaly.items()}, source)

    @classmethod
    def from_json(cls, path: str | Path) -> PromptSet:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"prompt set not found: {path} (built-in sets: {', '.join(BUILTIN_PROMPT_SETS)})"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        return cls.from_dict(data, str(path))


def _prompt_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)


def load_prompt_set(spec: str | Path) -> PromptSet:
    """A built-in set by name (`ucf-crime`, `msad`) or a JSON file."""
    if str(spec) in BUILTIN_PROMPT_SETS:
        resource = resources.files("fgclip.evaluation") / "prompts" / BUILTIN_PROMPT_SETS[str(spec)]
        return PromptSet.from_dict(json.loads(resource.read_text(encoding="utf-8")), f"built-in:{spec}")
    return PromptSet.from_json(spec)


@dataclass(frozen=True)
class PromptBank:
    """Encoded prompts of one head, ready to score embeddings of that head."""

    classes: tuple[str, ...]
    prompt_embeds: torch.Tensor  # (P, D) normalised
    prompt_class: torch.Tensor  # (P,) class index of each prompt
    logit_scale: float

    def class_embeds(self) -> torch.Tensor:
        """(C, D) prompt ensembles: the normalised mean of each class's normalised prompt embeddings."""
        sums = self.prompt_embeds.new_zeros(len(self.classes), self.prompt_embeds.shape[1])
        sums.index_add_(0, self.prompt_class, self.prompt_embeds)  # (C, D)
        return F.normalize(sums, dim=-1)

    def class_probabilities(self, embeds: torch.Tensor, rule: str = DEFAULT_SCORING) -> torch.Tensor:
        """(N, D) normalised embeddings -> (N, C) float64 class probabilities."""
        embeds = embeds.to(self.prompt_embeds.device, torch.float64)
        if rule == "ensemble":
            logits = self.logit_scale * embeds @ self.class_embeds().double().T  # (N, C)
            return logits.softmax(-1)
        if rule == "softmax_sum":
            prompt_probs = (self.logit_scale * embeds @ self.prompt_embeds.double().T).softmax(-1)  # (N, P)
            probs = prompt_probs.new_zeros(len(embeds), len(self.classes))  # (N, C)
            return probs.index_add_(1, self.prompt_class, prompt_probs)
        raise ValueError(f"unknown scoring rule {rule!r} (rules: {', '.join(SCORING_RULES)})")


def anomaly_scores(class_probs: torch.Tensor) -> torch.Tensor:
    """(N, C) class probabilities -> (N,) anomaly probability (mass of every class but Normal)."""
    return class_probs[:, 1:].sum(-1)


@torch.no_grad()
def encode_prompts(
    model, tokenizer, prompts: PromptSet, *, head: str = "clip", max_length: int = 77, batch_size: int = 256
) -> PromptBank:
    """Embed every prompt with the text head matching `head` (see the module docstring)."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r} (heads: {', '.join(HEADS)})")
    texts, classes = prompts.texts()
    captions = CaptionTokenizer(tokenizer, max_length)
    device = next(model.parameters()).device
    encode = model.get_caption_features if head == "clip" else model.get_text_features
    parts = []
    for start in range(0, len(texts), batch_size):
        ids, mask = _pad(captions(texts[start : start + batch_size]), captions.pad_token_id)
        parts.append(F.normalize(encode(ids.to(device), mask.to(device)).float(), dim=-1))  # (b, D)
    scale = model.logit_scale if head == "clip" else model.logit_scale_finegraind
    scale = scale.clamp(max=model.config.logit_scale_max)  # the temperature the losses trained with
    return PromptBank(
        prompts.classes, torch.cat(parts), torch.tensor(classes, device=device), float(scale.exp())
    )


def _pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask
