"""The `fgclip data ...` commands (check, convert-labelstudio, convert-normal-dict, cache); parsers in cli.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fgclip.data.errors import EntryProblem


def parse_remaps(pairs: list[str] | None) -> dict[str, str]:
    remaps = {}
    for pair in pairs or []:
        old, sep, new = pair.partition("=")
        if not sep:
            raise SystemExit(f"--path-remap expects OLD=NEW, got {pair!r}")
        remaps[old] = new
    return remaps


def _read_options(args):
    from fgclip.data.formats.cliplist import ReadOptions

    return ReadOptions(
        annotation_fps=args.annotation_fps,
        invalid_entries="skip" if getattr(args, "skip_invalid", False) else "error",
        image_caption_field=getattr(args, "image_caption_field", "caption"),
    )


def _convert_options(args):
    from fgclip.data.formats import ConvertOptions

    return ConvertOptions(
        video_prefix=getattr(args, "video_prefix", ""),
        open_track_end=getattr(args, "open_track_end", "video_end"),
        caption_field=getattr(args, "caption_field", None),
    )


def _sampling(args):
    from fgclip.data.dataset import SamplingOptions

    return SamplingOptions(
        num_frames=getattr(args, "num_frames", 8),
        image_size=getattr(args, "size", 224),
        max_regions=getattr(args, "max_regions", 4),
        context_s=args.context_s,
        single_keyframe_hold_s=args.single_keyframe_hold_s,
    )


def run_check(args) -> int:
    from fgclip.data.check import CheckOptions, check_manifests

    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer, local_files_only=True)
    options = CheckOptions(
        video_root=args.video_root,
        path_remaps=parse_remaps(args.path_remap),
        check_videos=not args.no_video,
        hard_negatives=args.hard_negatives or [],
        test_list=args.test_list,
        read=_read_options(args),
        convert=_convert_options(args),
        sampling=_sampling(args),
        tokenizer=tokenizer,
    )
    report = check_manifests(args.manifests, options)
    print(json.dumps(report.to_dict(), indent=1, ensure_ascii=False) if args.json else report.format_text())
    return report.exit_code


def run_convert(args, fmt: str) -> int:
    """Convert, validate through the clip-list reader, write. Errors: exit 1 without writing, unless --skip-invalid."""
    from fgclip.data.formats import convert_document
    from fgclip.data.formats.cliplist import load_json, read_clip_entries

    source = str(args.input)
    conversion = convert_document(load_json(source), source, fmt, args.annotation_fps, _convert_options(args))
    read = read_clip_entries(
        conversion.entries, source, options=_read_options(args), annotation_fps=conversion.annotation_fps,
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


def _print_problems(problems: list[EntryProblem], shown: int = 30) -> None:
    for p in problems[:shown]:
        print(f"  {p}", file=sys.stderr)
    if len(problems) > shown:
        print(f"  ... and {len(problems) - shown} more", file=sys.stderr)


def run_cache(args) -> int:
    from fgclip.data.cache_clips import cache_clips
    from fgclip.data.formats import read_manifest
    from fgclip.data.frame_cache import FrameCache
    from fgclip.data.paths import VideoResolver

    resolver = VideoResolver(args.video_root, parse_remaps(args.path_remap))
    clips = []
    for manifest in args.manifests:
        result = read_manifest(manifest, resolver, _read_options(args), convert=_convert_options(args))
        if result.errors:
            print(f"{manifest}: {len(result.errors)} bad entries left out (--skip-invalid)", file=sys.stderr)
        clips.extend(result.clips)
    cache = FrameCache(args.out, size=(args.size, args.size), cache_fps=args.cache_fps)

    def progress(done: int, total: int, video: Path) -> None:
        if done == total or done % 50 == 0:
            print(f"  {done}/{total} videos ({video.name})", file=sys.stderr, flush=True)

    summary = cache_clips(clips, cache, _sampling(args), progress)
    print(f"{summary}; cache: {args.out} ({args.size}x{args.size}, {args.cache_fps:g} fps)")
    return 0
