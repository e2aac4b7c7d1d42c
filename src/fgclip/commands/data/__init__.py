"""`fgclip data synth | check | convert-labelstudio | convert-normal-dict | cache | show` (show: `show.py`).

`check`, `cache` and `show` read what training reads: give them the run config (`fgclip data check run.yaml`,
trailing `--key value` pairs override it as for train; its train and eval manifests are read with its data
settings) or bare manifests, whose flags (`--video-root`, `--annotation-fps`, ...) are turned into the same
`data.*` settings (`sources.py`). Either way the manifests are read through `fgclip.builders.data_options`, so
the cache is written, the check run and the clip drawn with exactly the settings of the training run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fgclip.commands.data import show
from fgclip.commands.data.sources import (
    all_manifests,
    conversion_arguments,
    data_config,
    is_config,
    show_command,
    source_arguments,
)


def register(commands) -> None:
    data = commands.add_parser("data", help="data tools").add_subparsers(title="data commands")
    _synth_parser(data)
    _check_parser(data)
    _convert_parsers(data)
    _cache_parser(data)
    show.register(data)


# ---------------------------------------------------------------------------------------------- parsers
def _synth_parser(data) -> None:
    synth = data.add_parser("synth", help="write the synthetic video benchmark")
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--num-videos", type=int, default=200)
    synth.add_argument("--size", type=int, default=64)
    synth.add_argument("--fps", type=float, default=25.0)
    synth.add_argument("--duration", type=float, default=4.0, help="seconds per video")
    synth.add_argument("--test-fraction", type=float, default=0.25)
    synth.add_argument("--normal-regions", action="store_true",
                       help="every calm shape gets its own box track and caption ('a cyan square moving calmly')")  # fmt: skip
    synth.add_argument("--untrimmed-test", action="store_true",
                       help="UCF-like test videos: 30-45 s, one 4-8 s event, ~8%% abnormal test frames")  # fmt: skip
    synth.set_defaults(run=run_synth)


def _check_parser(data) -> None:
    check = data.add_parser(
        "check",
        help="validate manifests and videos, summarise them, report test-set leakage (exit 1 on errors)",
    )
    source_arguments(check)
    check.add_argument("--no-video", action="store_true", help="check annotations only (no video is opened)")
    check.add_argument(
        "--scan", action="store_true",
        help="also read every packet of every video (no decoding): finds files holding fewer frames than their "
        "header promises (cut short, garbage mid-file); results kept in the probe index",
    )  # fmt: skip
    check.add_argument(
        "--test-list", metavar="FILE", help="test videos (e.g. Anomaly_Test.txt): leakage report"
    )
    check.add_argument("--max-regions", type=int, help="regions kept per clip (default 4)")
    check.add_argument("--num-frames", type=int, help="frames sampled per clip (default 8)")
    check.add_argument("--tokenizer", metavar="DIR", help="count caption lengths in this tokenizer's tokens")
    check.add_argument("--json", action="store_true", help="print the full report as JSON")
    check.set_defaults(run=run_check)


def _convert_parsers(data) -> None:
    for name, fmt, what in (
        ("convert-labelstudio", "labelstudio", "a Label Studio videorectangle export"),
        ("convert-normal-dict", "normal_dict", "a legacy normal-clip dict"),
    ):
        convert = data.add_parser(name, help=f"convert {what} to a clip list (format 1)")
        convert.add_argument("input", metavar="EXPORT.json" if fmt == "labelstudio" else "DICT.json")
        convert.add_argument("-o", "--output", required=True, metavar="OUT.json")
        convert.add_argument(
            "--skip-invalid", action="store_true", help="write the valid entries despite errors"
        )
        convert.add_argument(
            "--annotation-fps", type=float, default=None if fmt == "labelstudio" else 25.0,
            help="grid of keyframe frame numbers"
            + (" (default: from the export's own frame/time)" if fmt == "labelstudio" else " (default 25)"),
        )  # fmt: skip
        conversion_arguments(convert)
        convert.set_defaults(run=lambda args, _, fmt=fmt: run_convert(args, fmt))


def _cache_parser(data) -> None:
    cache = data.add_parser("cache", help="pre-extract every clip's frames so training skips decoding")
    source_arguments(cache)
    cache.add_argument("--out", help="cache folder (default: the config's data.frame_cache)")
    cache.add_argument("--cache-fps", type=float, default=8.0, help="frames per second kept (0: every frame)")
    cache.add_argument("--encoding", choices=("jpeg", "raw"), default="jpeg",
                       help="jpeg (q90, ~14 kB/frame) or raw uint8, memory-mapped (150 kB/frame at 224 px)")  # fmt: skip
    cache.add_argument("--size", type=int, help="frame side in pixels (default: the model's input size)")
    cache.set_defaults(run=run_cache)


# ------------------------------------------------------------------------------------------------- verbs
def run_synth(args, _) -> int:
    from fgclip.synthetic import generate

    summary = generate(
        args.out,
        seed=args.seed,
        num_videos=args.num_videos,
        size=args.size,
        fps=args.fps,
        duration_s=args.duration,
        test_fraction=args.test_fraction,
        normal_regions=args.normal_regions,
        untrimmed_test=args.untrimmed_test,
    )
    print(summary)
    return 0


def run_check(args, overrides) -> int:
    from fgclip.tools.check import check_manifests, check_options

    config = data_config(args.sources, args, overrides)
    tokenizer = _check_tokenizer(args, config)
    options = check_options(config.data, check_videos=not args.no_video, tokenizer=tokenizer, scan=args.scan)
    report = check_manifests(
        all_manifests(config), options, show_command(args.sources, args, overrides, config)
    )
    print(json.dumps(report.to_dict(), indent=1, ensure_ascii=False) if args.json else report.format_text())
    return report.exit_code


def _check_tokenizer(args, config):
    """Caption lengths in tokens: --tokenizer, else the run config's own tokenizer, else words."""
    from fgclip import builders

    if args.tokenizer:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(args.tokenizer, local_files_only=True)
    if is_config(args.sources[0]) and (config.model.tokenizer or Path(config.model.init).is_dir()):
        return builders.build_tokenizer(config.model)
    return None


def run_convert(args, fmt: str) -> int:
    """Convert, validate through the clip-list reader, write. Errors: exit 1 without writing, unless --skip-invalid."""
    from fgclip.data.formats import ConvertOptions, convert_document
    from fgclip.data.formats.cliplist import ReadOptions, load_json, read_clip_entries

    source = str(args.input)
    convert = ConvertOptions(
        video_prefix=args.video_prefix or "",
        open_track_end=args.open_track_end or "video_end",
        caption_field=args.caption_field,
    )
    read_options = ReadOptions(
        annotation_fps=args.annotation_fps or 25.0, invalid_entries="skip" if args.skip_invalid else "error"
    )
    conversion = convert_document(load_json(source), source, fmt, args.annotation_fps, convert)
    read = read_clip_entries(
        conversion.entries, source, options=read_options, annotation_fps=conversion.annotation_fps,
        origins=conversion.origins, format=fmt,
    )  # fmt: skip
    problems = conversion.problems + read.problems
    bad = set(read.skipped_entries)
    _print_problems(problems)
    errors = [p for p in problems if p.is_error]
    if errors and not args.skip_invalid:
        print(f"{len(errors)} error(s): nothing written (--skip-invalid writes the rest)", file=sys.stderr)
        return 1
    conversion.entries = [e for i, e in enumerate(conversion.entries) if i not in bad]
    conversion.write(args.output)
    grid = f" on a {conversion.annotation_fps:g}-fps annotation grid" if conversion.annotation_fps else ""
    print(
        f"wrote {len(conversion.entries)} clip-list entries{grid} from {conversion.num_source_entries} source "
        f"entries to {args.output}; {len(errors)} error(s) left out, {len(problems) - len(errors)} warning(s)"
    )
    return 0


def _print_problems(problems, shown: int = 30) -> None:
    for p in problems[:shown]:
        print(f"  {p}", file=sys.stderr)
    if len(problems) > shown:
        print(f"  ... and {len(problems) - shown} more", file=sys.stderr)


def run_cache(args, overrides) -> int:
    from fgclip import builders
    from fgclip.config import ConfigError
    from fgclip.data.frame_cache import FrameCache
    from fgclip.tools.cache_clips import cache_clips

    config = data_config(args.sources, args, overrides)
    out = args.out or config.data.frame_cache
    if out is None:
        raise ConfigError("no cache folder: give --out DIR (or data.frame_cache in the config)")
    size = args.size or config.data.image_size or builders.input_image_size(config.model)
    clips = builders.read_clips(config.data, all_manifests(config))
    cache = FrameCache(out, size=(size, size), cache_fps=args.cache_fps, encoding=args.encoding)

    def progress(done: int, total: int, video: Path) -> None:
        if done == total or done % 50 == 0:
            print(f"  {done}/{total} videos ({video.name})", file=sys.stderr, flush=True)

    summary = cache_clips(clips, cache, builders.sampling_options(config.data, size), progress)
    print(f"{summary}; cache: {out} ({size}x{size}, {args.cache_fps:g} fps, {args.encoding})")
    return 0
