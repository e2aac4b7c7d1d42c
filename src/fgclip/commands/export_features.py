"""`fgclip export-features CHECKPOINT`: per-snippet clip embeddings, one .npy per video (VadCLIP layout)."""

from __future__ import annotations

from pathlib import Path

from fgclip.commands._checkpoint import common_arguments, load_checkpoint_run, snippet_frames
from fgclip.commands._errors import check_writable, writing_to


def register(commands) -> None:
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
    common_arguments(export, scoring=False)
    export.set_defaults(run=run, accepts_overrides=True)


def run(args, rest) -> int:
    from fgclip import builders
    from fgclip.data.paths import VideoResolver
    from fgclip.evaluation.inference import export_features

    loaded = load_checkpoint_run(args, {}, rest)
    check_writable(args.out, "--out")
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
    config = loaded.config
    image_size = builders.sampling_options(config.data, builders.model_image_size(loaded.model)).image_size
    with writing_to(args.out, "--out"):  # .npy files are written as the videos are done
        path = export_features(
            loaded.model, videos, args.out, snippet_frames(args, image_size),
            builders.snippet_options(config, args.batch_frames, args.workers), partial_snippet=args.partial_snippet, skip_existing=args.skip_existing,
            meta={"checkpoint": str(loaded.checkpoint), "image_size": image_size}, progress=not args.no_progress,
        )  # fmt: skip
    print(f"[fgclip] {len(videos)} video(s) -> {args.out}; description: {path}")
    return 0
