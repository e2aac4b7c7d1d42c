"""The backbone comparison under a fixed head: one recipe, the same seeds, features of two backbones.

For each seed the head is trained on backbone A's and on backbone B's training features (same recipe, same
validation split -- it depends on the seed and the labels only -- same batch order) and evaluated on the
same test videos. Reported: frame AUC / AP (native convention) mean +- sd over the seeds for each backbone,
and the paired difference B - A per seed, mean +- sd (sample sd, ddof=1). The difference is the quantity to
read: the seed moves both heads together, so the paired sd is the honest spread of "B beats A".
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from fgclip.evaluation.anomaly import TemporalAnnotation
from fgclip.head.features import FeatureError, FeatureSet, VideoLabel, labels_for, read_features
from fgclip.head.frame_metrics import check_test_set, evaluate_head, read_ground_truth
from fgclip.head.model import HeadConfig
from fgclip.head.train import TrainOptions, split_training_videos, train_head

METRICS = ("auc", "ap")
logger = logging.getLogger(__name__)


def run_seed(
    train: FeatureSet,
    test: FeatureSet,
    labels: dict[str, VideoLabel],
    test_labels: dict[str, VideoLabel],
    annotations: dict[str, TemporalAnnotation],
    head_config: dict,
    options: TrainOptions,
    train_crops: list[int] | None = None,
) -> dict:
    """Train one head (validation split from the training videos; every crop, or `train_crops`, of the
    training videos) and evaluate it: frame AUC / AP."""
    split = split_training_videos(labels, val_fraction=options.val_fraction, seed=options.seed)
    config = HeadConfig(feature_dim=train.dim, **head_config)
    trained = train_head(
        train.training_views(split.train, "the training list", train_crops),
        train.select(split.validation, "the validation split"),
        labels, split, config=config, options=options,
    )  # fmt: skip
    report = evaluate_head(trained.head, test, test_labels, annotations).report
    overall = report["frame_level"]["overall"]
    logger.info("[fgclip] head on %s, seed %d: frame AUC %.4f, AP %.4f", train.root, options.seed,
                overall["auc"], overall["ap"])  # fmt: skip
    return {
        "seed": options.seed, "auc": overall["auc"], "ap": overall["ap"],
        "vadclip_auc": report["vadclip_convention"]["overall"]["auc"],
        "best_step": trained.report["selection"]["best_step"],
        "best_val_auc": trained.report["selection"]["best_val_auc"],
    }  # fmt: skip


def compare_backbones(
    backbones: dict[str, tuple[FeatureSet, FeatureSet]],
    labels: dict[str, VideoLabel],
    test_labels: dict[str, VideoLabel],
    annotations: dict[str, TemporalAnnotation],
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    head_config: dict | None = None,
    options: TrainOptions | None = None,
    train_crops: list[int] | None = None,
) -> dict:
    """backbones: name -> (train features, test features), exactly two. Returns runs, summary, paired diff."""
    options = options or TrainOptions()
    if len(backbones) != 2:
        raise ValueError(f"compare needs exactly two backbones, got {list(backbones)}")
    if len(seeds) < 3:
        raise ValueError(f"a comparison rests on >= 3 seeds, got {list(seeds)}")
    for _, test in backbones.values():  # fail on a mismatched test set before training any head
        check_test_set(test, test_labels, annotations)
    runs = {
        name: [run_seed(train, test, labels, test_labels, annotations, head_config or {}, replace(options, seed=s),
                        train_crops) for s in seeds]
        for name, (train, test) in backbones.items()
    }  # fmt: skip
    a, b = list(backbones)
    summary = {
        name: {m: _mean_sd([r[m] for r in rows]) for m in (*METRICS, "vadclip_auc")}
        for name, rows in runs.items()
    }
    paired = {
        m: {"per_seed": [rb[m] - ra[m] for ra, rb in zip(runs[a], runs[b], strict=True)]} for m in METRICS
    }
    for values in paired.values():
        values.update(_mean_sd(values["per_seed"]))
    return {"backbones": [a, b], "seeds": list(seeds), "runs": runs, "summary": summary,
            "paired_difference": {"of": f"{b} - {a}", **paired}}  # fmt: skip


def _mean_sd(values: list[float]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "sd": float(array.std(ddof=1)) if len(array) > 1 else 0.0}


def format_comparison(result: dict) -> str:
    a, b = result["backbones"]
    seeds = ",".join(map(str, result["seeds"]))
    paired = result["paired_difference"]
    width = max(len(a), len(b), len("paired " + paired["of"])) + 2
    lines = [f"head frame AUC / AP over seeds {seeds} (mean ± sd; native convention; VadCLIP-convention AUC)",
             f"{'backbone':<{width}} {'frame AUC':>17} {'frame AP':>17} {'AUC (VadCLIP)':>17}"]  # fmt: skip
    for name in (a, b):
        row = result["summary"][name]
        lines.append(
            f"{name:<{width}} {_pm(row['auc']):>17} {_pm(row['ap']):>17} {_pm(row['vadclip_auc']):>17}"
        )
    lines.append(f"{'paired ' + paired['of']:<{width}} {_pm(paired['auc'], signed=True):>17} "
                 f"{_pm(paired['ap'], signed=True):>17}")  # fmt: skip
    return "\n".join(lines)


def _pm(stat: dict, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{stat['mean']:{sign}.4f} ± {stat['sd']:.4f}"


def head_comparison_for_demo(
    train_features: dict[str, str | Path],
    test_features: dict[str, str | Path],
    train_labels: str | Path | None,
    test_list: str | Path | None,
    temporal_annotations: str | Path,
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    head_config: dict | None = None,
    options: TrainOptions | None = None,
    crop: int | None = None,
    train_crops: list[int] | None = None,
    feature_root: str | Path | None = None,
) -> dict:
    """Everything from paths: two backbones' export folders or list CSVs (name -> train / test) ->
    `compare_backbones`; the labels default to the list CSVs' own (backbone A's).

    The result also carries `"table"`, the printed comparison.
    """
    if set(train_features) != set(test_features):
        raise FeatureError(
            f"train and test features name different backbones: {sorted(train_features)} vs {sorted(test_features)}"
        )
    backbones = {
        name: (read_features(train_features[name], crop, feature_root),
               read_features(test_features[name], crop, feature_root))
        for name in train_features
    }  # fmt: skip
    first_train, first_test = next(iter(backbones.values()))
    result = compare_backbones(
        backbones, labels_for(first_train, train_labels, "--labels"), labels_for(first_test, test_list, "--test-list"),
        read_ground_truth(temporal_annotations), seeds=seeds, head_config=head_config, options=options,
        train_crops=train_crops,
    )  # fmt: skip
    result["table"] = format_comparison(result)
    return result
