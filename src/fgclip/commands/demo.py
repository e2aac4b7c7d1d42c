"""`fgclip demo`: synthetic data -> train a tiny CLIP -> evaluate -> report.json + loss_curves.png."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from fgclip.config import ExperimentConfig, load_config
from fgclip.configs import demo_config_path, finetune_config_path
from fgclip.tools.training_run import train

FRAME_CACHE = "frame_cache"  # under --out
# Head steps: at 200 every stand-in head was still selecting its last step (validation AUC rising); 600
# lets validation peak first (the selected steps are printed and written to report.json).
HEAD_STEPS = 600


def register(commands) -> None:
    demo = commands.add_parser(
        "demo",
        help="synthetic data -> fine-tune the pretrained stand-in -> evaluate before/after -> anomaly head "
        "(a few minutes on CPU)",
    )
    demo.add_argument("--out", default="demo_out")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--num-videos", type=int, default=200)
    demo.add_argument("--from-scratch", action="store_true", help="train a tiny CLIP from scratch instead")
    demo.add_argument("--no-head", action="store_true", help="skip the weakly supervised head comparison")
    demo.add_argument(
        "--no-frame-cache", action="store_true",
        help="decode the training clips from the videos every epoch instead of from a frame cache (same pixels)",
    )  # fmt: skip
    demo.set_defaults(run=run, accepts_overrides=True)


def run(args, overrides) -> int:
    run_demo(
        args.out, seed=args.seed, num_videos=args.num_videos, overrides=overrides,
        from_scratch=args.from_scratch, head=not args.no_head, frame_cache=not args.no_frame_cache,
    )  # fmt: skip
    return 0


def run_demo(
    out_dir: str | Path,
    *,
    seed: int = 0,
    num_videos: int = 200,
    overrides: list[str] | None = None,
    from_scratch: bool = False,
    head: bool = True,
    frame_cache: bool = True,
) -> dict:
    """synthetic data -> (stand-in zero-shot) -> fine-tune -> evaluate -> (head on both backbones' features)."""
    from fgclip import builders
    from fgclip.synthetic import generate

    out_dir = Path(out_dir)
    started = time.perf_counter()
    data = generate(out_dir / "data", seed=seed, num_videos=num_videos)
    print(f"[demo] synthetic benchmark: {data.out_dir} ({time.perf_counter() - started:.1f} s)", flush=True)
    path = demo_config_path() if from_scratch else finetune_config_path()
    cache = ["--data.frame_cache", str(out_dir / FRAME_CACHE)] if frame_cache else []
    config = load_config(path, _demo_overrides(out_dir, seed) + cache + list(overrides or []))
    before = None
    if config.model.init not in ("tiny", "vit-b-32"):
        tokenizer = builders.build_tokenizer(config.model)
        pretrained, _ = builders.build_model(config.model, tokenizer)
        before = (pretrained, tokenizer)
    if config.data.frame_cache is not None:
        size = builders.model_image_size(pretrained) if before else builders.input_image_size(config.model)
        cache_demo_clips(config, size)
    if before is not None:
        zero_shot = evaluate_run(config, pretrained, tokenizer, data.out_dir)
        print(f"[demo] {config.model.init} zero-shot:\n{format_report(zero_shot)}", flush=True)
    outcome = train(config)
    trained = time.perf_counter()
    report = evaluate_run(config, outcome.model, outcome.tokenizer, data.out_dir)
    if before is not None:
        report["zero_shot"] = zero_shot
    if head:
        backbones = {"fine-tuned": (outcome.model, outcome.tokenizer)}
        if before is not None:
            backbones = {"stand-in": before, **backbones}
        if len(backbones) == 2:
            comparison = head_comparison(config, backbones, data.out_dir, out_dir / "head")
            report["head"] = {k: comparison[k] for k in ("summary", "paired_difference", "seeds")}
            report["head"]["selected_step"] = selected_steps(comparison)
            print(comparison["table"], flush=True)
            print(format_selected_steps(report["head"]["selected_step"]), flush=True)
    report["timing_s"] = {"total": time.perf_counter() - started, "train": trained - started}
    report["global_step"] = outcome.global_step
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    print(format_report(report, report.get("zero_shot")), flush=True)
    print(
        f"[demo] report: {out_dir / 'report.json'}; curves: {Path(config.train.output_dir) / 'loss_curves.png'}"
    )
    return report


def cache_demo_clips(config: ExperimentConfig, image_size: int) -> None:
    """Every training and evaluation clip's span into a lossless frame cache (`fgclip data cache --encoding
    raw --cache-fps 0`): the same pixels as decoding (tests/commands/test_cli_demo.py), read at ~4 ms instead of
    ~15 ms per clip, which on 2 cores is CPU the training step gets back (README, "The demo")."""
    from fgclip import builders
    from fgclip.data.frame_cache import FrameCache
    from fgclip.tools.cache_clips import cache_clips

    data = config.data
    clips = builders.read_clips(data, [*data.train_manifests, *data.eval_manifests])
    cache = FrameCache(data.frame_cache, size=(image_size, image_size), cache_fps=0, encoding="raw")
    summary = cache_clips(clips, cache, builders.sampling_options(data, image_size))
    print(f"[demo] frame cache: {summary}", flush=True)


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
    twins = ["--eval.twins", str(out_dir / "data" / "meta.json")]  # localization's control: the normal twin
    return demo_overrides(out_dir / "data", out_dir / "run", seed) + twins


def evaluate_run(config: ExperimentConfig, model, tokenizer, data_dir: Path) -> dict:
    """The shared evaluation (`fgclip.builders.evaluate`), so `fgclip eval` on the saved model agrees."""
    from fgclip.builders import EvalOptions, evaluate

    # decoded, not from the training frame cache: localization reads frames outside the cached clip spans
    # (the twin's, and the track's own), and a decoded frame is the cached one (test_cli_demo)
    decoded = dataclasses.replace(config, data=dataclasses.replace(config.data, frame_cache=None))
    return evaluate(decoded, model, tokenizer, EvalOptions(progress=False)).report


def format_report(report: dict, before: dict | None = None) -> str:
    """The headline figures; with `before` (the stand-in zero-shot) beside the fine-tuned ones."""
    rows = [
        ("clip retrieval R@1 (text->clip)", lambda r: r["clip_retrieval_R@1"]["value"]),
        ("region retrieval R@1 (text->region)", lambda r: r["region_retrieval_R@1"]["value"]),
        ("hard-negative accuracy", lambda r: (r.get("hard_negatives") or {}).get("accuracy")),
        ("frame-level anomaly AUC (zero-shot)", lambda r: r["frame_auc"]["value"]),
        ("frame-level anomaly AP (zero-shot)", lambda r: r["frame_ap"]),
        ("localization pointing (anomaly map)", lambda r: _localization(r, "pointing")),
        ("  same box in the normal twin (lower)", lambda r: _localization(r, "twin_pointing")),
        ("localization map-box IoU", lambda r: _localization(r, "iou")),
    ]
    chance = {
        "clip retrieval R@1 (text->clip)": report["clip_retrieval_R@1"]["chance"],
        "region retrieval R@1 (text->region)": report["region_retrieval_R@1"]["chance"],
        "frame-level anomaly AUC (zero-shot)": 0.5,
        "localization pointing (anomaly map)": _localization(report, "pointing_chance"),
        "  same box in the normal twin (lower)": _localization(report, "pointing_chance"),
        "localization map-box IoU": _localization(report, "iou_chance"),
    }
    columns = (["stand-in"] if before else []) + ["trained", "chance"]
    lines = [f"{'metric':<40}" + "".join(f"{c:>10}" for c in columns)]
    for name, value in rows:
        cells = ([value(before)] if before else []) + [value(report), chance.get(name)]
        lines.append(f"{name:<40}" + "".join(f"{'-' if v is None else f'{v:.3f}':>10}" for v in cells))
    for backbone, summary in (report.get("head") or {}).get("summary", {}).items():
        auc, ap = summary["auc"], summary["ap"]
        lines.append(
            f"{'head frame AUC / AP, ' + backbone:<40}{auc['mean']:>10.3f}{ap['mean']:>10.3f}  (mean of seeds)"
        )
    return "\n".join(lines)


def _localization(report: dict, key: str) -> float | None:
    return (report.get("localization") or {}).get(key)


def head_comparison(
    config: ExperimentConfig, backbones: dict, data: Path, out: Path, seeds=(0, 1, 2)
) -> dict:
    """The field's headline number on the demo data: export snippet features of every synthetic video with
    each backbone (`fgclip export-features`' code), train the weakly supervised head on the training videos'
    features (video labels only), evaluate frame AUC/AP on the test videos, same seeds for both backbones."""
    from fgclip import builders
    from fgclip.data.frames import FrameSource
    from fgclip.evaluation.export import export_features
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
            model.eval(), videos, folders[name], FrameSource(image_size), builders.snippet_options(config),
            progress=False,
        )  # fmt: skip
    return head_comparison_for_demo(
        folders, folders, train_list, data / "test_list.txt", data / "test_annotation.txt",
        seeds=tuple(seeds), options=TrainOptions(steps=HEAD_STEPS),
    )  # fmt: skip


def selected_steps(comparison: dict) -> dict:
    """Per backbone, the step each seed's head was selected at (best head-validation AUC) out of HEAD_STEPS:
    a selected step before the last evaluation means validation had stopped rising."""
    return {
        name: {"steps": HEAD_STEPS, "per_seed": [run["best_step"] for run in runs]}
        for name, runs in comparison["runs"].items()
    }


def format_selected_steps(selected: dict) -> str:
    parts = [f"{name} {', '.join(map(str, s['per_seed']))}" for name, s in selected.items()]
    steps = next(iter(selected.values()))["steps"]
    return f"[demo] head selected at step (best validation AUC, of {steps}): " + "; ".join(parts)
