"""Evaluation measures: embed a clip dataset, retrieval, hard negatives, region classification, video scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fgclip.data.collate import ClipCollator
from fgclip.data.dataset import ClipDataset
from fgclip.data.frames import FrameSource
from fgclip.evaluation.anomaly import TemporalAnnotation
from fgclip.evaluation.pooling import SnippetPooling, pooled_embeddings
from fgclip.evaluation.retrieval import retrieval_report
from fgclip.evaluation.snippet_options import DEFAULT_SNIPPETS, SnippetOptions
from fgclip.evaluation.snippets import VideoScores, iter_video_snippets, score_snippets
from fgclip.evaluation.zeroshot import DEFAULT_SCORING, PromptBank
from fgclip.losses.contrastive import hard_negative_hits


@dataclass
class EmbeddedSet:
    clip_embeds: torch.Tensor  # (N, D)
    caption_embeds: torch.Tensor  # (N, D)
    caption_keys: torch.Tensor  # (N,)
    region_embeds: torch.Tensor  # (M, D)
    region_text_embeds: torch.Tensor  # (M, D)
    region_keys: torch.Tensor  # (M,)
    region_labels: torch.Tensor  # (M,) 0 normal, 1 abnormal
    region_clip_index: torch.Tensor  # (M,) index into the dataset's clips
    hard_negative_correct: int
    hard_negative_regions: int
    hard_negative_chance: float = 0.0  # sum over those regions of 1 / (K + 1), K its present negatives


_STACKED = (
    "clip_embeds",
    "caption_embeds",
    "caption_keys",
    "region_embeds",
    "region_text_embeds",
    "region_keys",
    "region_labels",
    "region_clip_index",
)


@torch.no_grad()
def embed_dataset(
    model, dataset: ClipDataset, pad_token_id: int, batch_size: int = 16, progress: bool = True
) -> EmbeddedSet:
    """Every clip, caption, region and region caption of `dataset`, in dataset order (deterministic)."""
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=ClipCollator(pad_token_id))
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in _STACKED}
    correct = total = offset = 0
    chance = 0.0
    for batch in tqdm(loader, desc="embedding clips", disable=not progress, leave=False):
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        features = model(**batch)
        valid = batch["region_valid"]  # (B, R)
        parts["clip_embeds"].append(features["clip_embeds"].cpu())
        parts["caption_embeds"].append(features["caption_embeds"].cpu())
        parts["caption_keys"].append(batch["caption_keys"].cpu())
        parts["region_embeds"].append(features["region_embeds"].cpu())
        parts["region_text_embeds"].append(features["region_text_embeds"].cpu())
        parts["region_keys"].append(batch["region_caption_keys"][valid].cpu())
        parts["region_labels"].append(batch["region_labels"][valid].cpu())
        parts["region_clip_index"].append(valid.nonzero()[:, 0].cpu() + offset)  # packed order = row-major
        offset += valid.shape[0]
        hits, regions, guesses = _hard_negative_hits(features)
        correct, total, chance = correct + hits, total + regions, chance + guesses
    stacked = {k: torch.cat(v) for k, v in parts.items()}
    return EmbeddedSet(
        **stacked, hard_negative_correct=correct, hard_negative_regions=total, hard_negative_chance=chance
    )


def _hard_negative_hits(features) -> tuple[int, int, float]:
    """(regions whose caption outscores all their hard negatives, regions with at least one, the sum of those
    regions' chance 1 / (K + 1) of picking their caption among it and its K negatives)."""
    present = features.get("hard_negative_present")
    if present is None or not bool(present.any()):
        return 0, 0, 0.0
    hits = hard_negative_hits(
        features["region_embeds"], features["region_text_embeds"], features["hard_negative_embeds"], present
    )
    counts = present.sum(1)  # (M,)
    chance = (1.0 / (counts[counts > 0] + 1).double()).sum()
    return int(hits.sum()), int(hits.numel()), float(chance)


def retrieval_metrics(embedded: EmbeddedSet) -> dict:
    clip_keys, region_keys = embedded.caption_keys, embedded.region_keys
    return {
        "clip": retrieval_report(embedded.clip_embeds, embedded.caption_embeds, clip_keys, clip_keys),
        "region": retrieval_report(
            embedded.region_embeds, embedded.region_text_embeds, region_keys, region_keys
        ),
        "num_clips": int(embedded.clip_embeds.shape[0]),
        "num_regions": int(embedded.region_embeds.shape[0]),
    }


def region_classification(
    embedded: EmbeddedSet,
    bank: PromptBank,
    clip_videos: list[str],
    annotations: dict[str, TemporalAnnotation] | None,
    rule: str = DEFAULT_SCORING,
) -> dict:
    """Zero-shot classification of every region against the label set (the prompt classes, region head).

    True class: Normal for a normal region; for an abnormal one, the class of its video in the temporal
    annotation file (videos absent from it count in the binary figure only). `binary_accuracy`: normal vs
    any anomaly class. Chance levels: 1/C for the class accuracy, the majority share for the binary one.
    """
    probs = bank.class_probabilities(embedded.region_embeds, rule)  # (M, C)
    predicted = probs.argmax(-1).cpu()  # (M,)
    labels = embedded.region_labels.cpu()
    truth = _region_classes(labels, embedded.region_clip_index, clip_videos, annotations, bank.classes)
    known = truth >= 0
    per_class = {
        name: {
            "accuracy": float((predicted[truth == c] == c).float().mean())
            if bool((truth == c).any())
            else None,
            "regions": int((truth == c).sum()),
        }
        for c, name in enumerate(bank.classes)
    }
    abnormal_share = float(labels.float().mean()) if len(labels) else 0.0
    return {
        "accuracy": float((predicted[known] == truth[known]).float().mean()) if bool(known.any()) else None,
        "accuracy_chance": 1.0 / len(bank.classes),
        "regions_with_class": int(known.sum()),
        "binary_accuracy": float(((predicted > 0).long() == labels).float().mean()) if len(labels) else None,
        "binary_chance": max(abnormal_share, 1.0 - abnormal_share),
        "num_regions": int(len(labels)),
        "classes": list(bank.classes),
        "per_class": per_class,
    }


def _region_classes(labels, clip_index, clip_videos, annotations, classes) -> torch.Tensor:
    """(M,) true class index per region; -1 when an abnormal region's class is unknown."""
    lookup = {name: i for i, name in enumerate(classes)}
    truth = torch.full_like(labels, -1)
    for m, (label, clip) in enumerate(zip(labels.tolist(), clip_index.tolist(), strict=True)):
        if label == 0:
            truth[m] = 0
            continue
        annotation = (annotations or {}).get(clip_videos[clip])
        if annotation is None or not annotation.is_abnormal:
            continue
        if annotation.label not in lookup:
            raise ValueError(
                f"region of video {clip_videos[clip]}: class {annotation.label!r} (temporal annotations) is not "
                f"in the label set {list(classes)}; use a prompt set with that class"
            )
        truth[m] = lookup[annotation.label]
    return truth


def score_videos(
    model,
    videos: dict[str, Path],
    bank: PromptBank,
    frames: FrameSource,
    options: SnippetOptions = DEFAULT_SNIPPETS,
    *,
    rule: str = DEFAULT_SCORING,
    progress: bool = True,
    pooling: SnippetPooling | None = None,  # None: the default (snippet)
) -> dict[str, VideoScores]:
    """Zero-shot snippet scores of every video (name -> path), in name order, read from the embeddings
    `pooling` makes (`fgclip.evaluation.pooling`); `options.workers` > 0 decodes in DataLoader workers (the same
    scores, see `iter_video_snippets`)."""
    model.eval()
    names = sorted(videos)
    name_of = {Path(videos[name]): name for name in names}
    scores = {}
    embedded = iter_video_snippets(model, [Path(videos[n]) for n in names], frames, options)
    for snippets in tqdm(
        embedded, total=len(names), desc="scoring videos", disable=not progress, leave=False
    ):
        embeds = pooled_embeddings(model, snippets, pooling)
        scores[name_of[snippets.video]] = score_snippets(snippets, bank, rule, embeds)
    return {name: scores[name] for name in names}


def stack_scores(scores: dict[str, VideoScores]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per-frame scores and native frame counts of scored videos."""
    return {n: s.frame_scores for n, s in scores.items()}, {n: s.layout.num_frames for n, s in scores.items()}
