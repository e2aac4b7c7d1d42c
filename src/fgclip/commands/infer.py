"""`fgclip infer VIDEO... --checkpoint C`: per-frame anomaly scores of videos (JSON, CSV, PNG timeline per video),
and optionally of box regions (one video).

Over many videos (`--video-list`), `torchrun --nproc_per_node N fgclip infer ...` or `--shard I/N` splits them:
each process writes the files of its own videos (shard i: videos i, i + N, ...), so the folder is complete when
every shard is -- there is nothing to merge. A video's scores do not depend on which process scored it."""

from __future__ import annotations

from pathlib import Path

from fgclip.commands._checkpoint import (
    common_arguments,
    join_torchrun,
    load_checkpoint_run,
    parse_shard,
    snippet_frames,
)
from fgclip.commands._errors import UsageError, check_writable, writing_to


def register(commands) -> None:
    infer = commands.add_parser(
        "infer", help="per-frame anomaly scores of one video (JSON, CSV, PNG timeline)"
    )
    infer.add_argument("video", nargs="*", help="video file(s)")
    infer.add_argument("--video-list", help="file with one video path per line (relative to --video-root)")
    infer.add_argument("--video-root", default=".", help="root of --video-list paths (default: .)")
    infer.add_argument("--shard", help="I/N: videos I, I+N, ... of the list only (array jobs)")
    infer.add_argument("--checkpoint", required=True, help="run/model or run/checkpoint-N")
    infer.add_argument("--prompts", help="prompt set: ucf-crime, msad or a JSON file (default: the run's)")
    infer.add_argument("--box", nargs=6, type=float, action="append", default=[],
                       metavar=("T_START", "T_END", "X1", "Y1", "X2", "Y2"),
                       help="also score this region (seconds; box normalised to [0,1]); repeatable")  # fmt: skip
    infer.add_argument("--temporal-annotations", help="shade this video's annotated anomaly on the timeline")
    infer.add_argument("--anomaly-maps", type=int, default=0, metavar="N",
                       help="also draw the anomaly map over the frames of the N highest-scoring snippets")  # fmt: skip
    infer.add_argument("--out", default="fgclip_infer", help="output folder (default: fgclip_infer)")
    common_arguments(infer)
    infer.set_defaults(run=run, accepts_overrides=True)


def _videos(args) -> list[Path]:
    from fgclip.data.paths import VideoResolver

    if bool(args.video) == bool(args.video_list):
        raise UsageError("give the videos either as arguments or with --video-list, not both and not neither")
    if args.video_list:
        if not Path(args.video_list).is_file():
            raise FileNotFoundError(f"--video-list {args.video_list}: file not found")
        resolve = VideoResolver(args.video_root)
        return [
            resolve(line.strip()) for line in Path(args.video_list).read_text().splitlines() if line.strip()
        ]
    return [Path(v) for v in args.video]


def run(args, rest) -> int:
    from fgclip.distributed import Shard

    videos = _videos(args)
    if args.box and len(videos) > 1:
        raise UsageError(f"--box scores a region of one video; {len(videos)} videos were given")
    shard = parse_shard(args.shard)
    join_torchrun(args)
    mine = (shard or Shard.of_rank()).take(videos)
    loaded = load_checkpoint_run(args, {"eval.prompts": args.prompts}, rest)
    banks = _prompt_banks(args, loaded)
    for video in mine:
        _infer_one(args, loaded, banks, video)
    if shard is not None or len(videos) > 1:
        print(f"[fgclip] {len(mine)} of {len(videos)} video(s) -> {args.out}")
    return 0


def _prompt_banks(args, loaded):
    """(prompt set, clip-head bank, region-head bank or None), encoded once for every video."""
    from fgclip import builders
    from fgclip.evaluation.zeroshot import load_prompt_set

    check_writable(args.out, "--out")
    if not loaded.config.eval.prompts:
        raise UsageError("no prompt set: pass --prompts ucf-crime|msad|FILE (the run config names none)")
    prompts = load_prompt_set(loaded.config.eval.prompts)
    clip_bank = builders.prompt_bank(loaded.config, loaded.model, loaded.tokenizer, prompts, head="clip")
    region_bank = (
        builders.prompt_bank(loaded.config, loaded.model, loaded.tokenizer, prompts, head="region")
        if args.box or args.anomaly_maps > 0
        else None
    )
    return prompts, clip_bank, region_bank


def _infer_one(args, loaded, banks, video: Path) -> None:
    from fgclip import builders
    from fgclip.evaluation.anomaly import read_temporal_annotations
    from fgclip.evaluation.inference import RegionQuery, infer_video, write_inference

    prompts, clip_bank, region_bank = banks
    regions = [RegionQuery(b[0], b[1], (b[2], b[3], b[4], b[5])) for b in args.box]
    config = loaded.config
    result = infer_video(
        loaded.model, video, clip_bank, snippet_frames(args, builders.sampling_options(config.data, builders.model_image_size(loaded.model)).image_size),
        builders.snippet_options(config, args.batch_frames), scoring=args.scoring, region_bank=region_bank, regions=regions,
        region_num_frames=config.data.num_frames, progress=not args.no_progress,
        pooling=builders.snippet_pooling(config),
    )  # fmt: skip
    annotation = None
    if args.temporal_annotations:
        annotation = read_temporal_annotations(args.temporal_annotations).get(video.stem)
    meta = {"checkpoint": str(loaded.checkpoint), "prompts": prompts.source}
    with writing_to(args.out, "--out"):
        paths = write_inference(result, args.out, annotation=annotation, meta=meta)
        if args.anomaly_maps > 0:
            paths["anomaly_maps"] = _anomaly_maps(args, loaded, region_bank, video, result.scores)
    scores = result.scores
    peak = int(scores.snippet_scores.argmax())
    print(f"{video.name}: {scores.layout.num_frames} frames, {scores.layout.num_snippets} snippets; "
          f"peak anomaly {scores.snippet_scores[peak]:.3f} at {scores.layout.bounds(peak)[0] / scores.fps:.2f} s")  # fmt: skip
    for region in result.regions:
        print(f"  region {region.query.box} [{region.query.t_start}, {region.query.t_end}] s: "
              f"anomaly {region.anomaly_score:.3f}")  # fmt: skip
    for name, path in paths.items():
        print(f"[fgclip] {name}: {path}")


def _anomaly_maps(args, loaded, bank, video: Path, scores) -> Path:
    """The anomaly map over the middle frame of each of the `--anomaly-maps` highest-scoring snippets."""
    import numpy as np

    from fgclip import builders
    from fgclip.data.dataset import to_pixel_values
    from fgclip.data.video import decode_frames
    from fgclip.evaluation.figures import plot_anomaly_maps
    from fgclip.evaluation.localization import frame_anomaly_maps, overlay_map

    size = builders.model_image_size(loaded.model)
    snippets = np.sort(np.argsort(-scores.snippet_scores, kind="stable")[: args.anomaly_maps])
    times = np.array([sum(scores.layout.bounds(int(s))) / 2 / scores.fps for s in snippets])
    frames = decode_frames(video, times, size=(size, size))  # (N, H, W, 3)
    maps = frame_anomaly_maps(loaded.model, to_pixel_values(frames), bank, rule=args.scoring).numpy()
    shown = [overlay_map(frame, heat) for frame, heat in zip(frames, maps, strict=True)]
    titles = [f"{t:.2f} s, snippet {scores.snippet_scores[s]:.2f}\nmap {m.min():.2f}..{m.max():.2f}"
              for t, s, m in zip(times, snippets, maps, strict=True)]  # fmt: skip
    return plot_anomaly_maps(shown, titles, Path(args.out) / f"{video.stem}.anomaly_maps.png")
