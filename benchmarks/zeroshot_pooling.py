"""Which embedding should a zero-shot snippet score be read from? (issue 12, `eval.snippet_pooling`)

Training pools T frames spread over a clip span of seconds; the UCF-Crime protocol scores 16-frame snippets
(~0.6 s here). Compared on the demo's held-out test videos, frame-level protocol kept (one score per native
frame), for the stand-in (zero-shot, before fine-tuning) and the demo's fine-tuned model, per seed:

- `frame`: each sampled frame scored alone, probabilities averaged over the snippet;
- `snippet`: the snippet's frames pooled by the temporal module (the protocol until now);
- `window W`: `data.num_frames` frames over W seconds centred on the snippet, pooled.

Each seed = its own synthetic benchmark (`fgclip demo --seed s`) and fine-tuning run; every pooling reads the
same snippet embeddings (embedded once per model), so the paired difference to `snippet` isolates pooling.

    python benchmarks/zeroshot_pooling.py --seeds 0 1 2              # the README table (demo settings)
    python benchmarks/zeroshot_pooling.py --seeds 0 1 2 --duration-s 12   # longer videos than clips
    python benchmarks/zeroshot_pooling.py --seeds 0 --steps 20 --num-videos 40   # smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ablation import mean_sd  # the same mean ± sd cells as the ablation table

from fgclip import builders
from fgclip.commands.demo import demo_overrides
from fgclip.config import load_config
from fgclip.configs import finetune_config_path
from fgclip.evaluation.anomaly import frame_level_metrics
from fgclip.evaluation.evaluators import EvalContext
from fgclip.evaluation.measures import stack_scores
from fgclip.evaluation.pooling import SnippetPooling, pooled_embeddings
from fgclip.evaluation.snippets import iter_video_snippets, score_snippets
from fgclip.synthetic import generate
from fgclip.tools.training_run import train


def poolings(windows: list[float], num_frames: int) -> dict[str, SnippetPooling]:
    rules = {"frame": SnippetPooling("frame"), "snippet": SnippetPooling("snippet")}
    for window_s in windows:
        rules[f"window {window_s:g} s"] = SnippetPooling("window", window_s, num_frames)
    return rules


def frame_metrics(
    config, model, tokenizer, rules: dict[str, SnippetPooling]
) -> dict[str, tuple[float, float]]:
    """{pooling: (frame AUC, frame AP)} on the run's anomaly test videos, every pooling from one embedding pass."""
    inputs = builders.build_eval_inputs(config, model.eval(), tokenizer, builders.EvalOptions(progress=False))
    bank = EvalContext(inputs).prompt_bank("clip")
    names = sorted(inputs.anomaly_videos)
    embedded = {
        s.video: s
        for s in iter_video_snippets(
            model, [inputs.anomaly_videos[n] for n in names], inputs.frames, inputs.snippet
        )
    }
    result = {}
    for label, pooling in rules.items():
        scores = {
            n: score_snippets(s, bank, inputs.scoring, pooled_embeddings(model, s, pooling))
            for n, s in ((n, embedded[inputs.anomaly_videos[n]]) for n in names)
        }
        frame_scores, counts = stack_scores(scores)
        metrics = frame_level_metrics(frame_scores, inputs.annotations, counts)["overall"]
        result[label] = (metrics["auc"], metrics["ap"])
    return result


def run_seed(seed: int, out: Path, args) -> dict:
    data = generate(
        out / f"data{seed}", seed=seed, num_videos=args.num_videos, duration_s=args.duration_s
    ).out_dir
    overrides = demo_overrides(data, out / f"run{seed}", seed) + ["--train.progress_bar", "false"]
    if args.steps:
        overrides += ["--train.max_steps", str(args.steps), "--train.save_steps", str(args.steps),
                      "--train.warmup_steps", str(min(30, args.steps // 10))]  # fmt: skip
    config = load_config(finetune_config_path(), overrides)
    rules = poolings(args.windows, config.data.num_frames)
    tokenizer = builders.build_tokenizer(config.model)
    standin, _ = builders.build_model(config.model, tokenizer)
    row = {"seed": seed, "stand-in": frame_metrics(config, standin, tokenizer, rules)}
    started = time.perf_counter()
    outcome = train(config)
    row["train_s"] = time.perf_counter() - started
    row["fine-tuned"] = frame_metrics(config, outcome.model, outcome.tokenizer, rules)
    return row


def table(rows: list[dict], model: str) -> str:
    labels = list(rows[0][model])
    lines = [
        f"{model}: frame AUC / AP over seeds {[r['seed'] for r in rows]} (mean ± sd; Δ = paired difference to snippet)",
        "| pooling | frame AUC | Δ AUC | frame AP | Δ AP |",
        "|---|---|---|---|---|",
    ]
    for label in labels:
        auc = [r[model][label][0] for r in rows]
        ap = [r[model][label][1] for r in rows]
        d_auc = [a - r[model]["snippet"][0] for a, r in zip(auc, rows, strict=True)]
        d_ap = [a - r[model]["snippet"][1] for a, r in zip(ap, rows, strict=True)]
        if label == "snippet":
            lines.append(f"| {label} | {mean_sd(auc)} | — | {mean_sd(ap)} | — |")
        else:
            lines.append(f"| {label} | {mean_sd(auc)} | {mean_sd(d_auc)} | {mean_sd(ap)} | {mean_sd(d_ap)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-videos", type=int, default=200)
    parser.add_argument(
        "--duration-s", type=float, default=4.0, help="synthetic video length (the demo's: 4)"
    )
    parser.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: the demo's)")
    parser.add_argument("--windows", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0])
    parser.add_argument("--out", help="work folder (default: a temporary one)")
    parser.add_argument("--json", help="write the per-seed results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        rows = []
        for seed in args.seeds:
            rows.append(run_seed(seed, out, args))
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    print(table(rows, "stand-in"))
    print()
    print(table(rows, "fine-tuned"))
    print(f"\nfine-tuning s per seed: {[round(r['train_s']) for r in rows]}")


if __name__ == "__main__":
    main()
