"""Evaluation of a trained model: retrieval (clip and region), hard-negative accuracy, frame-level AUC/AP."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fgclip.data.collate import ClipCollator
from fgclip.data.dataset import ClipDataset
from fgclip.data.text import CaptionTokenizer
from fgclip.evaluation.anomaly import PromptSet, TemporalAnnotation, frame_level_metrics, score_video
from fgclip.evaluation.retrieval import retrieval_report


@dataclass
class EmbeddedSet:
    clip_embeds: torch.Tensor  # (N, D)
    caption_embeds: torch.Tensor  # (N, D)
    caption_keys: torch.Tensor  # (N,)
    region_embeds: torch.Tensor  # (M, D)
    region_text_embeds: torch.Tensor  # (M, D)
    region_keys: torch.Tensor  # (M,)
    hard_negative_correct: int
    hard_negative_regions: int


@torch.no_grad()
def embed_dataset(
    model, dataset: ClipDataset, pad_token_id: int, batch_size: int = 16, progress: bool = True
) -> EmbeddedSet:
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=ClipCollator(pad_token_id))
    parts: dict[str, list[torch.Tensor]] = {
        k: [] for k in EmbeddedSet.__dataclass_fields__ if "hard" not in k
    }
    correct = total = 0
    for batch in tqdm(loader, desc="embedding clips", disable=not progress, leave=False):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        features = model(**batch)
        parts["clip_embeds"].append(features["clip_embeds"].cpu())
        parts["caption_embeds"].append(features["caption_embeds"].cpu())
        parts["caption_keys"].append(batch["caption_keys"].cpu())
        parts["region_embeds"].append(features["region_embeds"].cpu())
        parts["region_text_embeds"].append(features["region_text_embeds"].cpu())
        parts["region_keys"].append(batch["region_caption_keys"][batch["region_valid"]].cpu())
        c, t = _hard_negative_hits(features)
        correct, total = correct + c, total + t
    return EmbeddedSet(
        **{k: torch.cat(v) for k, v in parts.items()},
        hard_negative_correct=correct,
        hard_negative_regions=total,
    )


def _hard_negative_hits(features) -> tuple[int, int]:
    """Regions (with at least one negative) whose own caption outscores every one of their negatives."""
    present = features.get("hard_negative_present")
    if present is None or not bool(present.any()):
        return 0, 0
    regions, texts, negatives = (
        features["region_embeds"],
        features["region_text_embeds"],
        features["hard_negative_embeds"],
    )
    positive = (regions * texts).sum(-1)  # (M,)
    negative = torch.einsum("md,mkd->mk", regions, negatives).masked_fill(~present, float("-inf"))  # (M, K)
    rows = present.any(1)
    hits = (positive > negative.max(1).values)[rows]
    return int(hits.sum()), int(rows.sum())


def retrieval_metrics(embedded: EmbeddedSet) -> dict:
    result = {
        "clip": retrieval_report(
            embedded.clip_embeds, embedded.caption_embeds, embedded.caption_keys, embedded.caption_keys
        ),
        "region": retrieval_report(
            embedded.region_embeds, embedded.region_text_embeds, embedded.region_keys, embedded.region_keys
        ),
        "hard_negative_accuracy": (
            embedded.hard_negative_correct / embedded.hard_negative_regions
            if embedded.hard_negative_regions
            else None
        ),
        "num_clips": int(embedded.clip_embeds.shape[0]),
        "num_regions": int(embedded.region_embeds.shape[0]),
    }
    return result


@torch.no_grad()
def anomaly_metrics(
    model,
    tokenizer,
    prompts: PromptSet,
    annotations: dict[str, TemporalAnnotation],
    videos: dict[str, Path],
    *,
    image_size: int,
    snippet_frames: int = 16,
    frames_per_snippet: int = 8,
    progress: bool = True,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Frame-level AUC/AP over `videos` (name -> path); also returns the per-frame scores."""
    model.eval()
    device = next(model.parameters()).device
    texts, num_normal = prompts.texts()
    ids = CaptionTokenizer(tokenizer)(texts)
    padded = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
    prompt_embeds = torch.nn.functional.normalize(
        model.get_caption_features(padded["input_ids"].to(device), padded["attention_mask"].to(device)),
        dim=-1,
    )
    scores = {}
    for name, path in tqdm(sorted(videos.items()), desc="scoring videos", disable=not progress, leave=False):
        scores[name] = score_video(
            model,
            path,
            prompt_embeds,
            num_normal,
            image_size=image_size,
            snippet_frames=snippet_frames,
            frames_per_snippet=frames_per_snippet,
        )
    return frame_level_metrics(scores, annotations), scores
