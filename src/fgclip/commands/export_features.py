"""`fgclip export-features CHECKPOINT`: per-snippet clip embeddings, fgclip's or VadCLIP's layout, 1/5/10 crops.

    fgclip export-features run/model --video-list Anomaly_Train.txt --video-root UCF_Crimes/Videos \\
        --out feats --layout vadclip --crops 10 [--skip-existing] [--shard I/N]

Layouts, crops, the snippet definition, atomic writes and resuming: `fgclip.evaluation.export`.
Under `torchrun --nproc_per_node N` each rank exports its shard and rank 0 writes `features.json`; with
`--shard I/N` each job writes `features.shard-I-of-N.json` and `fgclip merge OUT` joins them.
"""

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
    export = commands.add_parser(
        "export-features", help="per-snippet clip embeddings, one .npy per video and crop"
    )
    export.add_argument("checkpoint", help="run/model or run/checkpoint-N")
    export.add_argument("--out", required=True, help="output folder (arrays, features.json, list CSVs)")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--videos", nargs="+", help="video files")
    source.add_argument("--video-list", help="file with one video path per line (relative to --video-root)")
    export.add_argument("--video-root", default=".", help="root of --video-list paths (default: .)")
    export.add_argument("--partial-snippet", choices=("keep", "drop"), default="keep",
                        help="keep or drop the short last snippet (default keep: every frame covered)")  # fmt: skip
    export.add_argument("--crops", type=int, choices=(1, 5, 10), default=1,
                        help="1: the resized frame; 5: corners + centre; 10: and their mirrors (default 1)")  # fmt: skip
    export.add_argument("--layout", choices=("fgclip", "vadclip"), default="fgclip",
                        help="fgclip: <stem>[__k].npy; vadclip: Class/<stem>__k.npy + path,label CSVs")  # fmt: skip
    export.add_argument(
        "--test-crop", type=int, default=0, help="the crop features_rgbtest.csv lists (default 0)"
    )
    export.add_argument("--skip-existing", action="store_true",
                        help="resume: keep videos whose files check out (torn or wrong files are redone)")  # fmt: skip
    export.add_argument(
        "--shard", help="I/N: export videos I, I+N, ... only (array jobs; then `fgclip merge OUT`)"
    )
    common_arguments(export, scoring=False)
    export.set_defaults(run=run, accepts_overrides=True)


def _videos(args) -> list[Path]:
    from fgclip.data.paths import VideoResolver

    if args.videos:
        videos = [Path(v) for v in args.videos]
    else:
        resolve = VideoResolver(args.video_root)
        if not Path(args.video_list).is_file():
            raise FileNotFoundError(f"--video-list {args.video_list}: file not found")
        lines = Path(args.video_list).read_text().splitlines()
        videos = [resolve(line.strip()) for line in lines if line.strip()]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} video(s) not found, e.g. {missing[:5]}: check --videos / --video-root"
        )
    return videos


def run(args, rest) -> int:
    from fgclip import builders
    from fgclip.data.crops import CropSpec
    from fgclip.evaluation.export import export_features

    shard = parse_shard(args.shard)
    if not 0 <= args.test_crop < args.crops:
        raise UsageError(f"--test-crop {args.test_crop}: must be below --crops {args.crops}")
    join_torchrun(args)
    loaded = load_checkpoint_run(args, {}, rest)
    check_writable(args.out, "--out")
    videos = _videos(args)
    config = loaded.config
    image_size = builders.sampling_options(config.data, builders.model_image_size(loaded.model)).image_size
    crops = CropSpec.field(args.crops, image_size)
    with writing_to(args.out, "--out"):  # .npy files are written as the videos are done
        path = export_features(
            loaded.model, videos, args.out, snippet_frames(args, crops.resize_side),
            builders.snippet_options(config, args.batch_frames, args.workers), partial_snippet=args.partial_snippet,
            skip_existing=args.skip_existing, meta={"checkpoint": str(loaded.checkpoint), "image_size": image_size},
            progress=not args.no_progress, crops=crops, layout=args.layout, test_crop=args.test_crop,
            shard=shard,
        )  # fmt: skip
    done = len(shard.take(videos)) if shard else len(videos)
    print(f"[fgclip] {done} video(s) x {args.crops} crop(s) -> {args.out}; description: {path}")
    if shard:
        print(f"[fgclip] shard {shard.index}/{shard.count} done; when all are, run: fgclip merge {args.out}")
    return 0
