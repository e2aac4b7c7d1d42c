"""Does each part of the method pay off where users train? Fine-tune a pretrained stand-in, ablate the loss
terms and the bank, >= 3 seeds per row, the same seeds in every row, paired differences, in one run.

Rows (DESIGN §5, issue 12): the stand-in zero-shot (no training); global loss only; + region loss;
+ region + hard negatives (the full objective); + the memory bank (`--bank`, YAML of the bank section).
Each trained row runs in two regimes: per-device batch 4 x accumulation 8 (the original system's) and
batch 16 x 1. Every run fine-tunes the same stand-in (`--init`, an HF-layout fgclip/CLIP directory) at a
fine-tuning learning rate on the synthetic benchmark, then is evaluated on its held-out test split by
`fgclip.builders.evaluate` (the code `fgclip eval` runs). Columns: clip R@1 (text->clip), region R@1 both
directions, hard-negative accuracy, frame AUC / AP (zero-shot, UCF-Crime protocol), region-loss rolling CV
before / after the bank's switch-on step, negatives per region query, s/step; mean ± sd over seeds and, for
each trained row, the mean ± sd of its paired difference (same seed) to the row above it.

    python benchmarks/ablation.py --init STANDIN_DIR                # the README table
    python benchmarks/ablation.py --init STANDIN_DIR --quick        # smoke run, numbers not meaningful
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from memory_bank_stability import rolling_cv  # the same CV in both bank benchmarks

from fgclip import builders
from fgclip.commands.demo import demo_overrides
from fgclip.config import load_config
from fgclip.configs import demo_config_path
from fgclip.synthetic import generate
from fgclip.tools.training_run import train
from fgclip.training.loss_plot import read_metrics

METRICS = (
    ("clip_r1", "clip R@1"),
    ("region_t2r", "region R@1 t->r"),
    ("region_r2t", "region R@1 r->t"),
    ("hard_negative", "hard-neg acc"),
    ("frame_auc", "frame AUC"),
    ("frame_ap", "frame AP"),
)


@dataclass(frozen=True)
class Row:
    name: str
    weights: tuple[float, float, float] | None  # global, region, hard negative; None = zero-shot
    bank: bool = False


ROWS = (
    Row("stand-in zero-shot", None),
    Row("global only", (1.0, 0.0, 0.0)),
    Row("+ region", (1.0, 1.0, 0.0)),
    Row("+ region + hard negatives", (1.0, 1.0, 1.0)),
    Row("+ bank", (1.0, 1.0, 1.0), bank=True),
)
REGIMES = {"batch 4 x accum 8": (4, 8), "batch 16": (16, 1)}


def overrides_for(row: Row, regime: tuple[int, int], seed: int, data: Path, out: Path, args) -> list[str]:
    batch, accumulation = regime
    weights = row.weights or (1.0, 1.0, 1.0)
    return [
        *demo_overrides(data, out, seed),
        "--model.init", str(args.init),
        "--model.tokenizer", "null",
        "--model.tiny", "{}",
        "--loss.global_weight", str(weights[0]),
        "--loss.region_weight", str(weights[1]),
        "--loss.hard_negative_weight", str(weights[2]),
        *_bank_overrides(args.bank if row.bank else "{size: 0}"),
        "--train.max_steps", str(args.steps),
        "--train.warmup_steps", str(max(1, args.steps // 10)),
        "--train.per_device_batch_size", str(batch),
        "--train.gradient_accumulation_steps", str(accumulation),
        "--train.learning_rate", str(args.lr),
        "--train.logit_scale_lr", str(args.lr),
        "--train.save_steps", str(10 * args.steps),
        "--train.logging_steps", str(max(1, args.steps // 4)),
        "--train.progress_bar", "false",
    ]  # fmt: skip


def _bank_overrides(section: str) -> list[str]:
    """`{size: 128, warmup_steps: 20}` -> ["--bank.size", "128", "--bank.warmup_steps", "20"]."""
    values = yaml.safe_load(section) or {}
    return [item for key, value in values.items() for item in (f"--bank.{key}", json.dumps(value))]


def evaluate(config, model, tokenizer) -> dict:
    report = builders.evaluate(config, model, tokenizer, builders.EvalOptions(progress=False)).report
    retrieval, frame = report["retrieval"], report["frame_level"]["overall"]
    return {
        "clip_r1": retrieval["clip"]["text_to_image_R@1"],
        "region_t2r": retrieval["region"]["text_to_image_R@1"],
        "region_r2t": retrieval["region"]["image_to_text_R@1"],
        "hard_negative": report["hard_negatives"]["accuracy"],
        "frame_auc": frame["auc"],
        "frame_ap": frame["ap"],
    }


def run_one(row: Row, regime: str, seed: int, data: Path, out: Path, args) -> dict:
    config = load_config(demo_config_path(), overrides_for(row, REGIMES[regime], seed, data, out, args))
    result = {"row": row.name, "regime": regime, "seed": seed}
    if row.weights is None:
        tokenizer = builders.build_tokenizer(config.model)
        model, _ = builders.build_model(config.model, tokenizer)
        return {**result, **evaluate(config, model, tokenizer)}
    started = time.perf_counter()
    outcome = train(config)
    seconds = time.perf_counter() - started
    rows = read_metrics(out / "metrics.jsonl")
    switch = config.bank.warmup_steps if row.bank else args.steps // 2
    before = [r["loss/region"] for r in rows if r["step"] <= switch and "loss/region" in r]
    after = [r["loss/region"] for r in rows if r["step"] > switch and "loss/region" in r]
    return {
        **result,
        **evaluate(config, outcome.model, outcome.tokenizer),
        "cv_before": rolling_cv(before, args.window),
        "cv_after": rolling_cv(after, args.window),
        "negatives": _mean(
            [r.get("region/negatives_per_query", float("nan")) for r in rows if r["step"] > switch]
        ),
        "seconds_per_step": seconds / args.steps,
    }


def _mean(values) -> float:
    values = [v for v in values if v == v]
    return statistics.fmean(values) if values else float("nan")


def mean_sd(values: list[float]) -> str:
    """`0.627 ± 0.050` (mean ± sd over seeds); the format of every seeded benchmark table."""
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def table(results: list[dict], regime: str, seeds: list[int]) -> str:
    header = (
        "| row | "
        + " | ".join(label for _, label in METRICS)
        + " | CV before | CV after | neg/query | s/step |"
    )
    lines = [f"**{regime}**, seeds {seeds}", "", header, "|" + "---|" * (len(METRICS) + 5)]
    previous = None
    for row in ROWS:
        runs = {
            r["seed"]: r for r in results if r["row"] == row.name and r["regime"] in (regime, "zero-shot")
        }
        cells = [mean_sd([runs[s][key] for s in seeds if s in runs]) for key, _ in METRICS]
        extra = ["—"] * 4
        if row.weights is not None:
            extra = [f"{_mean([runs[s][k] for s in seeds]):.3f}" for k in ("cv_before", "cv_after")]
            extra += [f"{_mean([runs[s]['negatives'] for s in seeds]):.1f}"]
            extra += [f"{_mean([runs[s]['seconds_per_step'] for s in seeds]):.2f}"]
        lines.append(f"| {row.name} | " + " | ".join(cells + extra) + " |")
        if previous is not None:
            diffs = [
                mean_sd([runs[s][key] - previous[s][key] for s in seeds if s in runs and s in previous])
                for key, _ in METRICS
            ]
            lines.append("| &nbsp;&nbsp;Δ paired vs row above | " + " | ".join(diffs) + " | | | | |")
        previous = runs
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--init", type=Path, required=True, help="the pretrained stand-in (HF-layout directory)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run")
    parser.add_argument("--lr", type=float, default=3e-4, help="fine-tuning learning rate (every group)")
    parser.add_argument(
        "--bank", default="{size: 128, warmup_steps: 20}", help="bank section of the + bank row"
    )
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--num-videos", type=int, default=200)
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--out", type=Path, default=None, help="keep runs here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 6 steps, 40 videos: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.window, args.num_videos = [0], 6, 2, 40
        args.bank = "{size: 32, warmup_steps: 2}"
    root = args.out or Path(tempfile.mkdtemp(prefix="ablation_"))
    data = root / "data"
    if not (data / "train.json").is_file():
        generate(data, seed=0, num_videos=args.num_videos)
    results_file = root / "results.jsonl"
    done = {(r["row"], r["regime"], r["seed"]) for r in _read(results_file)}
    for seed in args.seeds:
        for regime in ["zero-shot", *args.regimes]:
            for row in ROWS:
                if (row.weights is None) != (regime == "zero-shot") or (row.name, regime, seed) in done:
                    continue
                if row.weights is None and seed != args.seeds[0]:  # no training: the same for every seed
                    zero_shot = next(r for r in _read(results_file) if r["row"] == row.name)
                    with results_file.open("a") as handle:
                        handle.write(json.dumps({**zero_shot, "seed": seed}) + "\n")
                    continue
                run_dir = (
                    root
                    / f"{regime.replace(' ', '_')}_{row.name.replace(' ', '_').replace('+', 'p')}_s{seed}"
                )
                result = run_one(
                    row, "batch 16" if regime == "zero-shot" else regime, seed, data, run_dir, args
                )
                result["regime"] = regime
                with results_file.open("a") as handle:
                    handle.write(json.dumps(result) + "\n")
                print(json.dumps(result), flush=True)
    results = _read(results_file)
    text = "\n\n".join(table(results, regime, args.seeds) for regime in args.regimes)
    (root / "table.md").write_text(text + "\n")
    print(text)


def _read(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    )


if __name__ == "__main__":
    main()
