"""Evaluators as plug-ins: each reads what it needs from an `EvalContext` and yields `(name, value)` pairs.

    EVALUATORS = {"retrieval": ..., "hard_negatives": ..., "region_classification": ..., "frame_anomaly": ...}
    report, scores = run_evaluators(["retrieval", "frame_anomaly"], inputs)

The report holds one section per evaluator (`report["retrieval"] = dict(pairs)`), or None when the inputs
an evaluator needs are absent (its `needs` say which, e.g. no eval clips or no temporal annotations). The
context embeds the eval clips and encodes each prompt bank once, however many evaluators use them. To add
an evaluator: a function `(EvalContext) -> Iterator[(name, value)]` and one `Evaluator` entry below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from fgclip.data.dataset import ClipDataset
from fgclip.data.frames import FrameSource
from fgclip.evaluation.anomaly import TemporalAnnotation, frame_level_metrics
from fgclip.evaluation.evaluate import (
    EmbeddedSet,
    embed_dataset,
    region_classification,
    retrieval_metrics,
    score_videos,
    stack_scores,
)
from fgclip.evaluation.localization import LocalizationOptions, dataset_reader, localize
from fgclip.evaluation.pooling import SnippetPooling
from fgclip.evaluation.snippets import VideoScores
from fgclip.evaluation.zeroshot import DEFAULT_SCORING, PromptBank, PromptSet, encode_prompts


@dataclass(frozen=True)
class SnippetOptions:
    snippet_frames: int = 16  # native frames per snippet (the VAD protocol's 16)
    frames_per_snippet: int = 8  # frames sampled from each snippet and pooled by the temporal module
    batch_frames: int = 256  # frames decoded and embedded at a time (bounds memory on long videos)
    workers: int = 0  # DataLoader worker processes decoding snippets while the model embeds (0: in-process)


@dataclass
class EvalInputs:
    """Everything the evaluators read, as plain objects (built from a run config by `fgclip.builders`)."""

    model: Any
    tokenizer: Any
    dataset: ClipDataset | None = None  # eval clips: retrieval, hard negatives, region classification
    pad_token_id: int = 0
    batch_size: int = 16
    prompts: PromptSet | None = None  # zero-shot label set: region classification, frame anomaly
    prompt_lengths: dict[str, int] = field(default_factory=lambda: {"clip": 248, "region": 77})
    annotations: dict[str, TemporalAnnotation] | None = None  # frame-level ground truth
    anomaly_videos: dict[str, Path] | None = None  # video name -> path, scored for frame-level AUC
    frames: FrameSource | None = None
    snippet: SnippetOptions = SnippetOptions()
    # what a snippet's zero-shot score is read from (frame / snippet / window; evaluation/pooling.py)
    pooling: SnippetPooling = SnippetPooling()
    scoring: str = DEFAULT_SCORING
    progress: bool = True
    # localization: {abnormal video stem: its matched normal clip} (the synthetic twins), and the map settings
    twins: dict | None = None
    localization: LocalizationOptions = LocalizationOptions()


class EvalContext:
    """The inputs plus what several evaluators share, computed on first use."""

    def __init__(self, inputs: EvalInputs):
        self.inputs = inputs
        self.video_scores: dict[str, VideoScores] = {}
        self._banks: dict[str, PromptBank] = {}

    @cached_property
    def embedded(self) -> EmbeddedSet:
        i = self.inputs
        return embed_dataset(i.model, i.dataset, i.pad_token_id, i.batch_size, i.progress)

    def prompt_bank(self, head: str) -> PromptBank:
        """Prompts encoded like that head's captions: clip prompts as global captions, region prompts as
        region captions (each with its own caption length)."""
        if head not in self._banks:
            i = self.inputs
            self._banks[head] = encode_prompts(
                i.model, i.tokenizer, i.prompts, head=head, max_length=i.prompt_lengths[head]
            )
        return self._banks[head]


@dataclass
class Evaluation:
    report: dict
    scores: dict[str, VideoScores]  # per anomaly-test video (empty without frame-level evaluation)
    annotations: dict[str, TemporalAnnotation] | None


Pairs = Iterator[tuple[str, Any]]


@dataclass(frozen=True)
class Evaluator:
    run: Callable[[EvalContext], Pairs]
    needs: tuple[str, ...]  # EvalInputs fields that must be set


def _retrieval(ctx: EvalContext) -> Pairs:
    yield from retrieval_metrics(ctx.embedded).items()


def _hard_negatives(ctx: EvalContext) -> Pairs:
    embedded = ctx.embedded
    regions = embedded.hard_negative_regions
    accuracy = embedded.hard_negative_correct / regions if regions else None
    chance = embedded.hard_negative_chance / regions if regions else None
    yield "accuracy", accuracy
    yield "accuracy_chance", chance  # mean 1 / (K + 1) over the regions
    yield "below_chance", accuracy < chance if regions else None
    yield "regions", regions


def _region_classification(ctx: EvalContext) -> Pairs:
    i = ctx.inputs
    videos = [clip.video.stem for clip in i.dataset.clips]
    bank = ctx.prompt_bank("region")
    yield from region_classification(ctx.embedded, bank, videos, i.annotations, i.scoring).items()


def _frame_anomaly(ctx: EvalContext) -> Pairs:
    i = ctx.inputs
    ctx.video_scores = score_videos(
        i.model, i.anomaly_videos, ctx.prompt_bank("clip"), i.frames,
        snippet_frames=i.snippet.snippet_frames, frames_per_snippet=i.snippet.frames_per_snippet,
        batch_frames=i.snippet.batch_frames, rule=i.scoring, progress=i.progress, workers=i.snippet.workers,
        pooling=i.pooling,
    )  # fmt: skip
    frame_scores, frame_counts = stack_scores(ctx.video_scores)
    yield from frame_level_metrics(frame_scores, i.annotations, frame_counts).items()
    yield "annotated_but_not_scored", sorted(set(i.annotations) - set(i.anomaly_videos))
    yield "frame_source", {kind: len(videos) for kind, videos in i.frames.used.items()}


def _localization(ctx: EvalContext) -> Pairs:
    i = ctx.inputs
    bank = ctx.prompt_bank("region")
    reader = dataset_reader(i.dataset)
    yield from localize(
        i.model, i.dataset.clips, reader, bank, twins=i.twins, options=i.localization, rule=i.scoring
    ).items()


EVALUATORS: dict[str, Evaluator] = {
    "retrieval": Evaluator(_retrieval, needs=("dataset",)),
    "hard_negatives": Evaluator(_hard_negatives, needs=("dataset",)),
    "region_classification": Evaluator(_region_classification, needs=("dataset", "prompts")),
    "frame_anomaly": Evaluator(_frame_anomaly, needs=("prompts", "annotations", "anomaly_videos", "frames")),
    "localization": Evaluator(_localization, needs=("dataset", "prompts")),
}


def run_evaluators(
    names: list[str], inputs: EvalInputs
) -> tuple[dict[str, dict | None], dict[str, VideoScores]]:
    """{evaluator: its pairs as a dict, or None when its inputs are missing}, and the scored videos."""
    unknown = [name for name in names if name not in EVALUATORS]
    if unknown:
        raise ValueError(f"unknown evaluator(s) {unknown}; choose from {list(EVALUATORS)}")
    ctx = EvalContext(inputs)
    report: dict[str, dict | None] = {}
    for name in names:
        evaluator = EVALUATORS[name]
        ready = all(getattr(inputs, need) is not None for need in evaluator.needs)
        report[name] = dict(evaluator.run(ctx)) if ready else None
    return report, ctx.video_scores
