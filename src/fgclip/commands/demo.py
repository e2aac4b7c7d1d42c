"""`fgclip demo`: synthetic data -> train a tiny CLIP -> evaluate -> report.json + loss_curves.png."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

from fgclip.commands.train import train
from fgclip.config import ExperimentConfig, load_config

DEMO_CONFIG = "demo.yaml"


def register(commands) -> None:
    demo = commands.add_parser(
        "demo", help="synthetic data -> tiny CLIP -> train -> evaluate (a few minutes on CPU)"
    )
    demo.add_argument("--out", default="demo_out")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--num-videos", type=int, default=200)
    demo.set_defaults(run=run, accepts_overrides=True)


def run(args, overrides) -> int:
    run_demo(args.out, seed=args.seed, num_videos=args.num_videos, overrides=overrides)
    return 0


def demo_config_path() -> Path:
    return Path(str(resources.files("fgclip") / "configs" / DEMO_CONFIG))


def run_demo(
    out_dir: str | Path, *, seed: int = 0, num_videos: int = 200, overrides: list[str] | None = None
) -> dict:
    from fgclip.tools.synth import generate

    out_dir = Path(out_dir)
    started = time.perf_counter()
    data = generate(out_dir / "data", seed=seed, num_videos=num_videos)
    print(f"[demo] synthetic benchmark: {data.out_dir} ({time.perf_counter() - started:.1f} s)", flush=True)
    config = load_config(demo_config_path(), _demo_overrides(out_dir, seed) + list(overrides or []))
    outcome = train(config)
    trained = time.perf_counter()
    report = evaluate_run(config, outcome.model, outcome.tokenizer, out_dir / "data")
    report["timing_s"] = {"total": time.perf_counter() - started, "train": trained - started}
    report["global_step"] = outcome.global_step
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    print(format_report(report), flush=True)
    print(
        f"[demo] report: {out_dir / 'report.json'}; curves: {Path(config.train.output_dir) / 'loss_curves.png'}"
    )
    return report


def synth_data_overrides(data: Path) -> list[str]:
    """Config overrides that train on the synthetic benchmark in `data` and evaluate on its test split."""
    return [
        "--data.train_manifests",
        json.dumps([str(data / "train.json")]),
        "--data.eval_manifests",
        json.dumps([str(data / "test.json")]),
        "--data.hard_negatives",
        json.dumps([str(data / "hard_negatives.json")]),
        "--data.video_root",
        str(data),
    ]


def demo_overrides(data: Path, run_dir: Path, seed: int) -> list[str]:
    """The demo's overrides of `demo.yaml`: train on the synthetic benchmark in `data`, evaluate on its test
    split (prompts and temporal annotations included), write the run to `run_dir`."""
    return [
        *synth_data_overrides(data),
        "--eval.prompts",
        str(data / "prompts.json"),
        "--eval.temporal_annotations",
        str(data / "test_annotation.txt"),
        "--train.output_dir",
        str(run_dir),
        "--train.overwrite_output_dir",  # the demo regenerates everything; a second run replaces the first
        "true",
        "--train.seed",
        str(seed),
    ]


def _demo_overrides(out_dir: Path, seed: int) -> list[str]:
    return demo_overrides(out_dir / "data", out_dir / "run", seed)


def evaluate_run(config: ExperimentConfig, model, tokenizer, data_dir: Path) -> dict:
    """The shared evaluation (`fgclip.builders.evaluate`), so `fgclip eval` on the saved model agrees."""
    from fgclip.builders import evaluate

    return evaluate(config, model, tokenizer).report


def format_report(report: dict) -> str:
    rows = [
        ("clip retrieval R@1 (text->clip)", report["clip_retrieval_R@1"]),
        ("region retrieval R@1 (text->region)", report["region_retrieval_R@1"]),
        ("frame-level anomaly AUC", report["frame_auc"]),
    ]
    lines = [f"{'metric':<38} {'value':>7} {'chance':>7}"]
    lines += [f"{name:<38} {m['value']:>7.3f} {m['chance']:>7.3f}" for name, m in rows]
    if (report.get("hard_negatives") or {}).get("accuracy") is not None:
        lines.append(f"{'hard-negative accuracy':<38} {report['hard_negatives']['accuracy']:>7.3f}")
    return "\n".join(lines)


def head_comparison(
    config: ExperimentConfig, backbones: dict, data: Path, out: Path, seeds=(0, 1, 2)
) -> dict:
    """The field's headline number on the demo data: export snippet features of every synthetic video with
    each backbone (`fgclip export-features`' code), train the weakly supervised head on the training videos'
    features (video labels only), evaluate frame AUC/AP on the test videos, same seeds for both backbones."""
    from fgclip import builders
    from fgclip.evaluation.inference import export_features
    from fgclip.head.compare import head_comparison_for_demo
    from fgclip.head.train import TrainOptions

    train_videos = [e["video"].removeprefix("videos/") for e in json.loads((data / "train.json").read_text())]
    train_list = out / "train_list.txt"
    train_list.parent.mkdir(parents=True, exist_ok=True)
    train_list.write_text("".join(f"{video}\n" for video in dict.fromkeys(train_videos)))
    test_videos = (data / "test_list.txt").read_text().split()
    videos = [data / "videos" / v for v in dict.fromkeys(train_videos + test_videos)]
    folders = {}
    for name, (model, _tokenizer) in backbones.items():
        image_size = builders.sampling_options(config.data, builders.model_image_size(model)).image_size
        folders[name] = out / name.replace(" ", "_")
        export_features(
            model.eval(), videos, folders[name], builders.FrameSource(image_size),
            snippet_frames=config.eval.snippet_frames, frames_per_snippet=config.eval.frames_per_snippet,
            progress=False,
        )  # fmt: skip
    return head_comparison_for_demo(
        folders, folders, train_list, data / "test_list.txt", data / "test_annotation.txt",
        seeds=tuple(seeds), options=TrainOptions(steps=200),
    )  # fmt: skip
