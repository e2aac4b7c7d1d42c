"""`fgclip eval CHECKPOINT`: retrieval, hard negatives, region classification and frame-level AUC/AP, with
the run's own settings; writes eval.json, ROC and timeline PNGs.

Sharded: under `torchrun --nproc_per_node N fgclip eval ...` every rank scores its shard of the anomaly-test
videos, rank 0 gathers the scores, computes AUC / AP once over all frames and writes the outputs. With
`--shard I/N` (array jobs) each job writes `eval.shard-I-of-N.*` into --out and `fgclip merge OUT` writes the
evaluation. Both equal the single-process one bit for bit (`fgclip.evaluation.shards`)."""

from __future__ import annotations

from pathlib import Path

from fgclip.commands._checkpoint import common_arguments, join_torchrun, load_checkpoint_run, parse_shard
from fgclip.commands._errors import check_writable, writing_to


def register(commands) -> None:
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
    evaluate.add_argument("--out", help="output folder (default: RUN/eval-<checkpoint name>; a checkpoint inside "
                          "the installed package, the shipped stand-in: ./eval-standin)")  # fmt: skip
    evaluate.add_argument("--timelines", type=int, default=6, help="score-timeline PNGs to write (default 6)")
    evaluate.add_argument("--shard", help="I/N: score anomaly-test videos I, I+N, ... only (array jobs; then "
                          "`fgclip merge OUT`)")  # fmt: skip
    common_arguments(evaluate)
    evaluate.set_defaults(run=run, accepts_overrides=True)


def default_out(checkpoint: Path) -> Path:
    """RUN/eval-<checkpoint name>, but never inside the installed package: the shipped stand-in's evaluation
    goes to ./eval-standin (an installed package may be read-only, and is no place for results)."""
    import fgclip
    from fgclip.standin import STANDIN

    resolved = checkpoint.resolve()
    if resolved.is_relative_to(Path(fgclip.__file__).resolve().parent):
        return Path.cwd() / f"eval-{STANDIN}"
    return resolved.parent / f"eval-{resolved.name}"


def run(args, rest) -> int:
    from fgclip.builders import EvalOptions, evaluate, evaluate_shard
    from fgclip.distributed import is_rank_zero
    from fgclip.evaluation.output import format_table, write_evaluation

    shard = parse_shard(args.shard)
    join_torchrun(args)
    pairs = {
        "data.eval_manifests": args.data,
        "data.video_root": args.video_root,
        "data.hard_negatives": args.hard_negatives,
        "eval.prompts": args.prompts,
        "eval.temporal_annotations": args.temporal_annotations,
    }
    loaded = load_checkpoint_run(args, pairs, rest)
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else default_out(checkpoint)
    check_writable(out, "--out")  # before the evaluation, not after it
    options = EvalOptions(
        scoring=args.scoring, batch_frames=args.batch_frames, workers=args.workers, frame_cache=args.frame_cache,
        write_frame_cache=args.write_frame_cache, anomaly_videos=args.anomaly_videos,
        anomaly_video_root=args.anomaly_video_root, progress=not args.no_progress,
    )  # fmt: skip
    if shard is not None:
        with writing_to(out, "--out"):
            extra = {"checkpoint": str(loaded.checkpoint), "load": loaded.load_report.to_dict()}
            path = evaluate_shard(loaded.config, loaded.model, loaded.tokenizer, options, shard, out, extra)
        print(
            f"[fgclip] shard {shard.index}/{shard.count}: {path}; when all are done, run: fgclip merge {out}"
        )
        return 0
    evaluation = evaluate(loaded.config, loaded.model, loaded.tokenizer, options)
    if not is_rank_zero():
        return 0  # rank 0 writes the outputs
    evaluation.report["checkpoint"] = str(loaded.checkpoint)
    evaluation.report["load"] = loaded.load_report.to_dict()
    with writing_to(out, "--out"):
        written = write_evaluation(evaluation, out, timelines=args.timelines)
    print(format_table(evaluation.report))
    for name, path in written.items():
        print(f"[fgclip] {name}: {path}")
    return 0
