"""Evaluators as whole plug-ins: each declares its name, what it needs, how it runs and how it is reported.

    results, scores = run_evaluators(["retrieval", "frame_level"], inputs)  # {name: section or None}
    report = evaluation_report(results, settings)  # eval.json: headline, one section per evaluator, settings
    format_table(report)  # fgclip.evaluation.output: each evaluator's console rows

An evaluator computes from what the context collects once and shares: `ctx.embedded` (every eval clip,
caption and region embedded, in dataset order) and `ctx.video_scores` (each anomaly-test video's zero-shot
frame scores). Collecting is kept apart from computing, so the per-video work can be split without touching
the metrics. The report holds one section per registered evaluator under its own name, None where it did
not run (not asked for, or its `needs` absent: no eval clips, no prompt set, no temporal annotations).

To add an evaluator: one `Evaluator(...)` entry in EVALUATORS; the config's `eval.evaluators`, eval.json and
the console table read it from there (tests/commands/test_cli_eval.py adds a toy one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from fgclip.data.dataset import ClipDataset
from fgclip.data.frames import FrameSource
from fgclip.distributed import Shard, gather_objects
from fgclip.evaluation.anomaly import TemporalAnnotation, frame_level_metrics
from fgclip.evaluation.localization import LocalizationOptions, dataset_reader, localize
from fgclip.evaluation.measures import (
    EmbeddedSet,
    embed_dataset,
    region_classification,
    retrieval_metrics,
    score_videos,
    stack_scores,
)
from fgclip.evaluation.pooling import SnippetPooling
from fgclip.evaluation.snippet_options import SnippetOptions
from fgclip.evaluation.snippets import VideoScores
from fgclip.evaluation.zeroshot import DEFAULT_SCORING, PromptBank, PromptSet, encode_prompts


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
    # which anomaly-test videos this process scores: None = the process group's shard (all of them at world
    # size 1; under torchrun every rank scores its shard and the scores are gathered, so each evaluator sees
    # every video); an explicit Shard (array jobs) scores only its own, merged later (`fgclip.evaluation.shards`)
    shard: Shard | None = None
    # localization: {abnormal video stem: its matched normal clip} (the synthetic twins), and the map settings
    twins: dict | None = None
    localization: LocalizationOptions = LocalizationOptions()


class EvalContext:
    """The inputs plus what several evaluators share, collected on first use."""

    def __init__(self, inputs: EvalInputs):
        self.inputs = inputs
        self._banks: dict[str, PromptBank] = {}

    @cached_property
    def embedded(self) -> EmbeddedSet:
        """Every eval clip, caption and region (and hard-negative hits), in dataset order."""
        i = self.inputs
        return embed_dataset(i.model, i.dataset, i.pad_token_id, i.batch_size, i.progress)

    @cached_property
    def video_scores(self) -> dict[str, VideoScores]:
        """Zero-shot snippet scores of every anomaly-test video (of an explicit shard's only), in name order.
        A video's scores depend on that video alone, so sharded scores equal single-process ones bit for bit."""
        i = self.inputs
        shard = i.shard or Shard.of_rank()
        mine = {name: i.anomaly_videos[name] for name in shard.take(sorted(i.anomaly_videos))}
        scores = score_videos(
            i.model, mine, self.prompt_bank("clip"), i.frames, i.snippet,
            rule=i.scoring, progress=i.progress, pooling=i.pooling,
        )  # fmt: skip
        if i.shard is not None:
            return scores
        return gather_video_scores(scores, i.frames)

    def scored_videos(self) -> dict[str, VideoScores]:
        """The videos scored so far (empty when no evaluator asked for video scores)."""
        return self.__dict__.get("video_scores", {})

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
Row = tuple[str, float | None, float | None]  # console table: metric, value, chance (None: no chance column)


def _no_rows(section: dict) -> Iterator[Row]:
    return iter(())


def _no_headline(section: dict | None) -> dict:
    return {}


@dataclass(frozen=True)
class Evaluator:
    name: str  # its `eval.evaluators` name and its eval.json section
    needs: tuple[str, ...]  # EvalInputs fields that must be set for it to run
    run: Callable[[EvalContext], Pairs]  # its section, as (name, value) pairs
    rows: Callable[[dict], Iterator[Row]] = _no_rows  # its console-table rows, from its section
    # eval.json's headline figures (first in the file, the demo's report keys), from its section or None
    headline: Callable[[dict | None], dict] = _no_headline


# ------------------------------------------------------------------------------------------- retrieval
def _retrieval(ctx: EvalContext) -> Pairs:
    yield from retrieval_metrics(ctx.embedded).items()


def _retrieval_rows(section: dict) -> Iterator[Row]:
    for level in ("clip", "region"):
        arrows = (("text_to_image", f"text->{level}"), ("image_to_text", f"{level}->text"))
        for direction, arrow in arrows:
            for k in (1, 5, 10):
                key = f"{direction}_R@{k}"
                name = f"{level} retrieval R@{k} ({arrow}, {section['num_' + level + 's']})"
                yield name, section[level][key], section[level][f"{key}_chance"]


def _retrieval_headline(section: dict | None) -> dict:
    return {
        "clip_retrieval_R@1": _with_chance(section["clip"], "text_to_image_R@1") if section else None,
        "region_retrieval_R@1": _with_chance(section["region"], "text_to_image_R@1") if section else None,
    }


def _with_chance(report: dict, key: str) -> dict:
    value, chance = report[key], report[f"{key}_chance"]
    return {"value": value, "chance": chance, "times_chance": value / chance}


# -------------------------------------------------------------------------------------- hard negatives
def _hard_negatives(ctx: EvalContext) -> Pairs:
    embedded = ctx.embedded
    regions = embedded.hard_negative_regions
    accuracy = embedded.hard_negative_correct / regions if regions else None
    chance = embedded.hard_negative_chance / regions if regions else None
    yield "accuracy", accuracy
    yield "accuracy_chance", chance  # mean 1 / (K + 1) over the regions
    yield "below_chance", accuracy < chance if regions else None
    yield "regions", regions


def _hard_negative_rows(section: dict) -> Iterator[Row]:
    flag = " BELOW CHANCE" if section.get("below_chance") else ""
    name = f"hard-negative accuracy ({section['regions']} regions){flag}"
    yield name, section["accuracy"], section.get("accuracy_chance")


# ------------------------------------------------------------------------------- region classification
def _region_classification(ctx: EvalContext) -> Pairs:
    i = ctx.inputs
    videos = [clip.video.stem for clip in i.dataset.clips]
    bank = ctx.prompt_bank("region")
    yield from region_classification(ctx.embedded, bank, videos, i.annotations, i.scoring).items()


def _region_classification_rows(section: dict) -> Iterator[Row]:
    yield (
        f"region classification ({section['regions_with_class']} regions)",
        section["accuracy"],
        section["accuracy_chance"],
    )
    yield "region normal/abnormal accuracy", section["binary_accuracy"], section["binary_chance"]


# --------------------------------------------------------------------------------------- frame level
def _frame_level(ctx: EvalContext) -> Pairs:
    i = ctx.inputs
    frame_scores, frame_counts = stack_scores(ctx.video_scores)
    yield from frame_level_metrics(frame_scores, i.annotations, frame_counts).items()
    yield "annotated_but_not_scored", sorted(set(i.annotations) - set(i.anomaly_videos))
    yield "frame_source", {kind: len(videos) for kind, videos in i.frames.used.items()}


def _frame_level_rows(section: dict) -> Iterator[Row]:
    for name, part in (("overall", section["overall"]), ("abnormal videos", section["abnormal_videos"])):
        yield f"frame AUC, {name} ({part['videos']} videos)", part["auc"], 0.5
        yield f"frame AP, {name}", part["ap"], part["ap_chance"]
    for label, part in section["per_class"].items():
        yield f"  {label}: frame AUC ({part['videos']} videos)", part["auc"], 0.5
        yield f"  {label}: frame AP", part["ap"], part["ap_chance"]


def _frame_level_headline(section: dict | None) -> dict:
    overall = (section or {}).get("overall", {})
    return {"frame_auc": {"value": overall.get("auc"), "chance": 0.5}, "frame_ap": overall.get("ap")}


# -------------------------------------------------------------------------------------- localization
def _localization(ctx: EvalContext) -> Pairs:
    i = ctx.inputs
    bank = ctx.prompt_bank("region")
    reader = dataset_reader(i.dataset)
    yield from localize(
        i.model, i.dataset.clips, reader, bank, twins=i.twins, options=i.localization, rule=i.scoring
    ).items()


def _localization_rows(section: dict) -> Iterator[Row]:
    if not section["frames"]:
        return
    yield (
        f"localization pointing ({section['frames']} frames)",
        section["pointing"],
        section["pointing_chance"],
    )
    yield "localization map-box IoU", section["iou"], section["iou_chance"]
    if section["twin_frames"]:  # a map that finds the anomaly reads near chance here
        yield (
            f"  same box in the normal twin ({section['twin_frames']})",
            section["twin_pointing"],
            section["pointing_chance"],
        )
    if section["object_frames"]:
        yield (
            f"  anomalous object among all ({section['object_frames']})",
            section["object_choice"],
            section["object_choice_chance"],
        )


def _localization_headline(section: dict | None) -> dict:
    if not section or not section["frames"]:
        return {"localization_pointing": None}
    return {"localization_pointing": {"value": section["pointing"], "chance": section["pointing_chance"],
                                      "twin": section["twin_pointing"]}}  # fmt: skip


# ------------------------------------------------------------------------------------------ registry
def _registry(*evaluators: Evaluator) -> dict[str, Evaluator]:
    return {evaluator.name: evaluator for evaluator in evaluators}


EVALUATORS: dict[str, Evaluator] = _registry(
    Evaluator("retrieval", ("dataset",), _retrieval, _retrieval_rows, _retrieval_headline),
    Evaluator("hard_negatives", ("dataset",), _hard_negatives, _hard_negative_rows),
    Evaluator(
        "region_classification", ("dataset", "prompts"), _region_classification, _region_classification_rows
    ),
    Evaluator(
        "frame_level",
        ("prompts", "annotations", "anomaly_videos", "frames"),
        _frame_level,
        _frame_level_rows,
        _frame_level_headline,
    ),
    Evaluator(
        "localization", ("dataset", "prompts"), _localization, _localization_rows, _localization_headline
    ),
)


def gather_video_scores(scores: dict[str, VideoScores], frames: FrameSource) -> dict[str, VideoScores]:
    """Every rank's video scores (and where their frames came from), in name order; identity at world size 1."""
    parts = gather_objects((scores, frames.used))
    if len(parts) == 1:
        return scores
    merged = {name: score for part, _ in parts for name, score in part.items()}
    for kind in frames.used:
        frames.used[kind] = [video for _, used in parts for video in used[kind]]
    return {name: merged[name] for name in sorted(merged)}


def evaluators_needing(field_name: str, names: list[str]) -> list[str]:
    """Those of `names` that need the EvalInputs field `field_name` (so it is built only when one runs)."""
    return [name for name in names if field_name in EVALUATORS[name].needs]


def run_evaluators(
    names: list[str], inputs: EvalInputs, scores: dict[str, VideoScores] | None = None
) -> tuple[dict[str, dict | None], dict[str, VideoScores]]:
    """{evaluator: its pairs as a dict, or None when its inputs are missing}, and the scored videos.
    `scores`: video scores collected already (the merged shards of `--shard I/N` jobs), used as they are."""
    unknown = [name for name in names if name not in EVALUATORS]
    if unknown:
        raise ValueError(f"unknown evaluator(s) {unknown}; choose from {list(EVALUATORS)}")
    ctx = EvalContext(inputs)
    if scores is not None:
        ctx.video_scores = scores  # fills the cached property: nothing is scored again
    results: dict[str, dict | None] = {}
    for name in names:
        evaluator = EVALUATORS[name]
        ready = all(getattr(inputs, need) is not None for need in evaluator.needs)
        results[name] = dict(evaluator.run(ctx)) if ready else None
    return results, ctx.scored_videos()


def evaluation_report(results: dict[str, dict | None], settings: dict) -> dict:
    """eval.json: every evaluator's headline figures first, then one section per registered evaluator under its
    own name (None where it did not run), then the settings."""
    headline: dict = {}
    for evaluator in EVALUATORS.values():
        headline.update(evaluator.headline(results.get(evaluator.name)))
    sections = {name: results.get(name) for name in EVALUATORS}
    return {**headline, **sections, "settings": settings}


def table_rows(report: dict) -> Iterator[Row]:
    """The console table's rows: each evaluator's, in registry order, for the sections that ran."""
    for evaluator in EVALUATORS.values():
        section = report.get(evaluator.name)
        if section:
            yield from evaluator.rows(section)
