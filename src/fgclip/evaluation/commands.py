"""`fgclip eval`, `fgclip infer`, `fgclip export-features` (registered by `fgclip.cli`).

Each takes a checkpoint written by `fgclip train` (`run/model` or `run/checkpoint-N`) and reuses the run's
settings from its `fgclip_config.yaml`; trailing `--section.key value` pairs override them (as for train).
Heavy imports happen inside the commands, so `fgclip --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

# fgclip.evaluation.zeroshot.SCORING_RULES / DEFAULT_SCORING, repeated so that building the parser imports no torch
SCORING_CHOICES = ("softmax_sum", "ensemble")
DEFAULT_SCORING = "softmax_sum"


def add_eval_parsers(commands) -> None:
    evaluate = commands.add_parser(
        "eval", help="retrieval, hard negatives, region classification and frame-level AUC/AP of a checkpoint",
        description="Evaluate a checkpoint of `fgclip train` with its run's data settings. Trailing "
                    "--section.key value pairs override the run config (e.g. --eval.frames_per_snippet 16).",
    )  # fmt: skip
    evaluate.add_argument("checkpoint", help="run/model or run/checkpoint-N")
    evaluate.add_argument(
        "--data", nargs="+", metavar="MANIFEST", help="eval clip lists (default: the run's)"
    )
    evaluate.add_argument("--video-root", help="root of the manifests' video paths (default: the run's)")
    evaluate.add_argument("--hard-negatives", nargs="+", metavar="FILE", help="hard-negative files")
    evaluate.add_argument("--prompts", help="prompt set: ucf-crime, msad or a JSON file (default: the run's)")
    evaluate.add_argument("--temporal-annotations", help="UCF-Crime-style ground truth for frame AUC/AP")
    evaluate.add_argument("--anomaly-videos", metavar="LIST",
                          help="videos scored for frame AUC, one relative path per line (e.g. Anomaly_Test.txt); "
                               "default: the eval manifests' videos that are in the annotation file")  # fmt: skip
    evaluate.add_argument("--anomaly-video-root", help="root of --anomaly-videos (default: the video root)")
    evaluate.add_argument("--out", help="output folder (default: RUN/eval-<checkpoint name>)")
    evaluate.add_argument("--timelines", type=int, default=6, help="score-timeline PNGs to write (default 6)")
    _common(evaluate)
    evaluate.set_defaults(run=run_eval, accepts_overrides=True)

    infer = commands.add_parser(
        "infer", help="per-frame anomaly scores of one video (JSON, CSV, PNG timeline)"
    )
    infer.add_argument("video")
    infer.add_argument("--checkpoint", required=True, help="run/model or run/checkpoint-N")
    infer.add_argument("--prompts", help="prompt set: ucf-crime, msad or a JSON file (default: the run's)")
    infer.add_argument("--box", nargs=6, type=float, action="append", default=[],
                       metavar=("T_START", "T_END", "X1", "Y1", "X2", "Y2"),
                       help="also score this region (seconds; box normalised to [0,1]); repeatable")  # fmt: skip
    infer.add_argument("--temporal-annotations", help="shade this video's annotated anomaly on the timeline")
    infer.add_argument("--out", default="fgclip_infer", help="output folder (default: fgclip_infer)")
    _common(infer)
    infer.set_defaults(run=run_infer, accepts_overrides=True)

    export = commands.add_parser("export-features", help="per-snippet clip embeddings, one .npy per video")
    export.add_argument("checkpoint", help="run/model or run/checkpoint-N")
    export.add_argument("--out", required=True, help="output folder for <stem>.npy files and features.json")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--videos", nargs="+", help="video files")
    source.add_argument("--video-list", help="file with one video path per line (relative to --video-root)")
    export.add_argument("--video-root", default=".", help="root of --video-list paths (default: .)")
    export.add_argument("--partial-snippet", choices=("keep", "drop"), default="keep",
                        help="keep or drop the short last snippet (default keep: every frame covered)")  # fmt: skip
    export.add_argument("--skip-existing", action="store_true", help="leave videos whose .npy exists")
    _common(export, scoring=False)
    export.set_defaults(run=run_export, accepts_overrides=True)


def _common(parser, scoring: bool = True) -> None:
    parser.add_argument(
        "--config", help="run config (default: fgclip_config.yaml of the checkpoint or its run)"
    )
    if scoring:
        parser.add_argument("--scoring", choices=SCORING_CHOICES, default=DEFAULT_SCORING,
                            help="zero-shot rule: softmax over all prompts, class mass summed (default), "
                                 "or prompt ensembling (class = mean prompt embedding)")  # fmt: skip
    parser.add_argument("--batch-frames", type=int, default=256, help="frames decoded+embedded at a time")
    parser.add_argument(
        "--frame-cache", help="read snippet frames from this frame-cache folder where it covers a video"
    )
    parser.add_argument("--write-frame-cache", action="store_true", help="cache videos the frame cache lacks")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _overrides(pairs: dict[str, object], rest: list[str]) -> list[str]:
    """Explicit options as config overrides, then the user's own (which win)."""
    result = []
    for key, value in pairs.items():
        if value is not None:
            result += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    return result + list(rest)


def _load(args, pairs: dict[str, object], rest: list[str]):
    from fgclip.evaluation.checkpoint import load_run

    run = load_run(args.checkpoint, config=args.config, overrides=_overrides(pairs, rest), device=args.device)
    print(f"[fgclip] {run.load_report.summary().splitlines()[0]}; run config: {run.config_path}", flush=True)
    return run


def _frames(args, image_size: int):
    from fgclip.data.frame_cache import FrameCache
    from fgclip.evaluation.snippets import SnippetFrames

    if args.write_frame_cache and not args.frame_cache:
        raise SystemExit("--write-frame-cache needs --frame-cache DIR")
    cache = FrameCache(args.frame_cache) if args.frame_cache else None
    return SnippetFrames(image_size, cache, args.write_frame_cache)


def run_eval(args, rest) -> int:
    from fgclip.evaluation.report import format_table, write_evaluation
    from fgclip.evaluation.run import EvalOptions, evaluate

    pairs = {
        "data.eval_manifests": args.data,
        "data.video_root": args.video_root,
        "data.hard_negatives": args.hard_negatives,
        "eval.prompts": args.prompts,
        "eval.temporal_annotations": args.temporal_annotations,
    }
    run = _load(args, pairs, rest)
    options = EvalOptions(
        scoring=args.scoring, batch_frames=args.batch_frames, frame_cache=args.frame_cache,
        write_frame_cache=args.write_frame_cache, anomaly_videos=args.anomaly_videos,
        anomaly_video_root=args.anomaly_video_root, progress=not args.no_progress,
    )  # fmt: skip
    evaluation = evaluate(run.config, run.model, run.tokenizer, options)
    evaluation.report["checkpoint"] = str(run.checkpoint)
    evaluation.report["load"] = run.load_report.to_dict()
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else checkpoint.resolve().parent / f"eval-{checkpoint.resolve().name}"
    written = write_evaluation(evaluation, out, timelines=args.timelines)
    print(format_table(evaluation.report))
    for name, path in written.items():
        print(f"[fgclip] {name}: {path}")
    return 0


def run_infer(args, rest) -> int:
    from fgclip.evaluation.anomaly import read_temporal_annotations
    from fgclip.evaluation.run import prompt_bank
    from fgclip.evaluation.zeroshot import load_prompt_set
    from fgclip.inference import RegionQuery, infer_video, write_inference
    from fgclip.training.run import sampling_options

    run = _load(args, {"eval.prompts": args.prompts}, rest)
    if not run.config.eval.prompts:
        raise SystemExit("no prompt set: pass --prompts ucf-crime|msad|FILE (the run config names none)")
    prompts = load_prompt_set(run.config.eval.prompts)
    clip_bank = prompt_bank(run.config, run.model, run.tokenizer, prompts, head="clip")
    region_bank = (
        prompt_bank(run.config, run.model, run.tokenizer, prompts, head="region") if args.box else None
    )
    regions = [RegionQuery(b[0], b[1], (b[2], b[3], b[4], b[5])) for b in args.box]
    config = run.config
    result = infer_video(
        run.model, args.video, clip_bank, _frames(args, sampling_options(config.data, run.model).image_size),
        snippet_frames=config.eval.snippet_frames, frames_per_snippet=config.eval.frames_per_snippet,
        batch_frames=args.batch_frames, scoring=args.scoring, region_bank=region_bank, regions=regions,
        region_num_frames=config.data.num_frames, progress=not args.no_progress,
    )  # fmt: skip
    annotation = None
    if args.temporal_annotations:
        annotation = read_temporal_annotations(args.temporal_annotations).get(Path(args.video).stem)
    meta = {"checkpoint": str(run.checkpoint), "prompts": prompts.source}
    paths = write_inference(result, args.out, annotation=annotation, meta=meta)
    scores = result.scores
    peak = int(scores.snippet_scores.argmax())
    print(f"{Path(args.video).name}: {scores.layout.num_frames} frames, {scores.layout.num_snippets} snippets; "
          f"peak anomaly {scores.snippet_scores[peak]:.3f} at {scores.layout.bounds(peak)[0] / scores.fps:.2f} s")  # fmt: skip
    for region in result.regions:
        print(f"  region {region.query.box} [{region.query.t_start}, {region.query.t_end}] s: "
              f"anomaly {region.anomaly_score:.3f}")  # fmt: skip
    for name, path in paths.items():
        print(f"[fgclip] {name}: {path}")
    return 0


def run_export(args, rest) -> int:
    from fgclip.data.paths import VideoResolver
    from fgclip.inference import export_features
    from fgclip.training.run import sampling_options

    run = _load(args, {}, rest)
    if args.videos:
        videos = [Path(v) for v in args.videos]
    else:
        resolve = VideoResolver(args.video_root)
        if not Path(args.video_list).is_file():
            raise SystemExit(f"video list not found: {args.video_list}")
        lines = Path(args.video_list).read_text().splitlines()
        videos = [resolve(line.strip()) for line in lines if line.strip()]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} video(s) not found, e.g. {missing[:5]}")
    config = run.config
    image_size = sampling_options(config.data, run.model).image_size
    path = export_features(
        run.model, videos, args.out, _frames(args, image_size), snippet_frames=config.eval.snippet_frames,
        frames_per_snippet=config.eval.frames_per_snippet, batch_frames=args.batch_frames,
        partial_snippet=args.partial_snippet, skip_existing=args.skip_existing,
        meta={"checkpoint": str(run.checkpoint), "image_size": image_size}, progress=not args.no_progress,
    )  # fmt: skip
    print(f"[fgclip] {len(videos)} video(s) -> {args.out}; description: {path}")
    return 0
