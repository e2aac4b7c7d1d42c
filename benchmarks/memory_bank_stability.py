"""Does the region memory bank help? Bank off vs several bank settings, same seeds and steps, in one run.

The setting of the original system: per-device batch 4, about one region per clip, gradient accumulation 8,
so the region loss of one micro-batch ranks each region against ~3 texts. Every setting trains a tiny CLIP
from scratch on the synthetic benchmark with the same seeds, data and schedule; the table reports

  - the region loss's rolling coefficient of variation (std/mean over a window of optimizer steps) before
    and after the bank switches on (memory_bank_warmup_steps) — the "oscillation" the original author saw;
  - held-out region retrieval R@1 (text -> region) on the test split, mean and spread over seeds;
  - the bank's mean entry age (optimizer steps) after switch-on, and seconds per optimizer step.

    python benchmarks/memory_bank_stability.py                 # the full sweep quoted in the README
    python benchmarks/memory_bank_stability.py --quick         # a smoke run (minutes), numbers not meaningful
    python benchmarks/memory_bank_stability.py --only "capacity 128" "capacity 128, fresh text 32"

The fresh-text and momentum rows (`bank.fresh_text`, `bank.momentum`) are the issue-12 freshness options;
the last column is each row's held-out region R@1 minus the first selected row's, paired by seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fgclip.builders import dataset_from_manifests, model_image_size
from fgclip.commands.demo import synth_data_overrides
from fgclip.config import load_config
from fgclip.configs import demo_config_path
from fgclip.evaluation.measures import embed_dataset, retrieval_metrics
from fgclip.synthetic import generate
from fgclip.tools.training_run import train
from fgclip.training.loss_plot import read_metrics


@dataclass(frozen=True)
class Setting:
    name: str
    size: int
    max_age: int | None = None
    fresh_text: int = 0
    momentum: float | None = None


SETTINGS = (
    Setting("bank off", 0),
    Setting("capacity 32", 32),
    Setting("capacity 128", 128),
    Setting("capacity 32, max age 1", 32, 1),
    Setting("capacity 128, max age 2", 128, 2),
    Setting("capacity 128, fresh text 32", 128, fresh_text=32),
    Setting("capacity 128, fresh text 128", 128, fresh_text=128),
    Setting("capacity 128, momentum 0.99", 128, momentum=0.99),
    Setting("capacity 128, fresh text 32, momentum 0.99", 128, fresh_text=32, momentum=0.99),
)


def run_one(setting: Setting, seed: int, data: Path, out: Path, args) -> dict:
    overrides = [
        *synth_data_overrides(data),
        "--data.batch_by_group",
        "false",
        "--data.num_workers",
        "1",
        "--model.tiny",
        args.tiny,
        "--bank.size",
        str(setting.size),
        "--bank.warmup_steps",
        str(args.warmup),
        "--bank.max_age",
        "null" if setting.max_age is None else str(setting.max_age),
        "--bank.fresh_text",
        str(setting.fresh_text),
        "--bank.momentum",
        "null" if setting.momentum is None else str(setting.momentum),
        "--train.output_dir",
        str(out),
        "--train.seed",
        str(seed),
        "--train.max_steps",
        str(args.steps),
        "--train.warmup_steps",
        str(max(1, args.steps // 10)),
        "--train.per_device_batch_size",
        "4",
        "--train.gradient_accumulation_steps",
        "8",
        "--train.learning_rate",
        str(args.lr),
        "--train.logit_scale_lr",
        str(args.lr),
        "--train.save_steps",
        str(10 * args.steps),
        "--train.logging_steps",
        str(max(1, args.steps // 5)),
        "--train.progress_bar",
        "false",
    ]
    config = load_config(demo_config_path(), overrides)
    torch.manual_seed(seed)
    started = time.perf_counter()
    outcome = train(config)
    seconds = time.perf_counter() - started
    dataset = dataset_from_manifests(
        config.data,
        config.data.eval_manifests,
        outcome.tokenizer,
        model_image_size(outcome.model),
        train=False,
    )
    embedded = embed_dataset(outcome.model, dataset, outcome.tokenizer.pad_token_id, progress=False)
    region = retrieval_metrics(embedded)["region"]
    rows = read_metrics(out / "metrics.jsonl")
    return {
        "setting": setting.name,
        "seed": seed,
        "region_r1": region["text_to_image_R@1"],
        "region_r1_chance": region["text_to_image_R@1_chance"],
        "cv_before": rolling_cv([r["loss/region"] for r in rows if r["step"] <= args.warmup], args.window),
        "cv_after": rolling_cv([r["loss/region"] for r in rows if r["step"] > args.warmup], args.window),
        "mean_age": _mean(
            [
                r["memory_bank/mean_age"]
                for r in rows
                if r["step"] > args.warmup and "memory_bank/mean_age" in r
            ]
        ),
        "negatives": _mean([r["region/negatives_per_query"] for r in rows if r["step"] > args.warmup]),
        "seconds_per_step": seconds / args.steps,
    }


def rolling_cv(values: list[float], window: int) -> float:
    """Mean over windows of std/mean of the region loss (population std), window in optimizer steps."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < window:
        return float("nan")
    windows = np.lib.stride_tricks.sliding_window_view(values, window)
    return float(np.mean(windows.std(axis=1) / windows.mean(axis=1)))


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def table(results: list[dict], args, settings) -> str:
    lines = [
        f"region-loss rolling CV (window {args.window} optimizer steps), held-out region R@1 (text->region, "
        f"chance {results[0]['region_r1_chance']:.3f}); {args.steps} optimizer steps, warm-up {args.warmup}, "
        f"batch 4 x accumulation 8, seeds {args.seeds}",
        "",
        "| setting | CV before | CV after | region R@1 (mean ± sd, min–max) | negatives/query | mean bank age "
        f"| s/step | Δ R@1 vs {settings[0].name} (paired by seed, mean ± sd) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first = {r["seed"]: r["region_r1"] for r in results if r["setting"] == settings[0].name}
    for setting in settings:
        rows = [r for r in results if r["setting"] == setting.name]
        r1 = [r["region_r1"] for r in rows]
        paired = [r["region_r1"] - first[r["seed"]] for r in rows]
        paired_sd = statistics.stdev(paired) if len(paired) > 1 else 0.0
        sd = statistics.stdev(r1) if len(r1) > 1 else 0.0
        age = _mean([r["mean_age"] for r in rows]) if setting.size else float("nan")
        lines.append(
            f"| {setting.name} | {_mean([r['cv_before'] for r in rows]):.3f} | {_mean([r['cv_after'] for r in rows]):.3f} "
            f"| {statistics.fmean(r1):.3f} ± {sd:.3f} ({min(r1):.3f}–{max(r1):.3f}) | {_mean([r['negatives'] for r in rows]):.1f} "
            f"| {'—' if setting.size == 0 else f'{age:.2f}'} | {_mean([r['seconds_per_step'] for r in rows]):.2f} "
            f"| {statistics.fmean(paired):+.3f} ± {paired_sd:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=50, help="memory_bank_warmup_steps")
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-videos", type=int, default=200)
    parser.add_argument(
        "--tiny",
        default="{image_size: 64, patch_size: 8, vision_width: 64, vision_layers: 4, "
        "text_width: 64, text_layers: 2, heads: 4, projection_dim: 64}",
    )
    parser.add_argument("--out", type=Path, default=None, help="keep runs here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 24 steps, 2 settings: a smoke run")
    parser.add_argument("--only", nargs="+", default=None, help="run only these settings (names as listed)")
    args = parser.parse_args()
    settings = SETTINGS
    if args.quick:
        args.seeds, args.steps, args.warmup, args.window, args.num_videos = [0], 24, 8, 5, 40
        settings = SETTINGS[:2]
    if args.only is not None:
        names = {s.name: s for s in SETTINGS}
        unknown = [name for name in args.only if name not in names]
        if unknown:
            parser.error(f"--only: unknown setting(s) {unknown}; choose from {list(names)}")
        settings = tuple(names[name] for name in args.only)
    root = args.out or Path(tempfile.mkdtemp(prefix="bank_stability_"))
    data = root / "data"
    if not (data / "train.json").is_file():
        generate(data, seed=0, num_videos=args.num_videos)
    results = []
    for seed in args.seeds:
        for setting in settings:
            run_dir = root / f"{setting.name.replace(' ', '_').replace(',', '')}_seed{seed}"
            result = run_one(setting, seed, data, run_dir, args)
            print(json.dumps(result), flush=True)
            results.append(result)
    (root / "results.json").write_text(json.dumps(results, indent=2))
    print()
    print(table(results, args, settings))


if __name__ == "__main__":
    main()
