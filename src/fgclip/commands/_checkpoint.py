"""What `fgclip eval`, `fgclip infer` and `fgclip export-features` share: a checkpoint of `fgclip train`, its
run config (`fgclip_config.yaml`, trailing `--section.key value` pairs override it), the snippet options.
"""

from __future__ import annotations

import argparse
import json

from fgclip.commands._errors import UsageError
from fgclip.evaluation.snippet_options import SnippetOptions

# fgclip.evaluation.zeroshot.SCORING_RULES / DEFAULT_SCORING, repeated so that building the parser imports no torch
SCORING_CHOICES = ("softmax_sum", "ensemble")
DEFAULT_SCORING = "softmax_sum"


def common_arguments(parser, scoring: bool = True) -> None:
    parser.add_argument(
        "--config", help="run config (default: fgclip_config.yaml of the checkpoint or its run)"
    )
    if scoring:
        parser.add_argument("--scoring", choices=SCORING_CHOICES, default=DEFAULT_SCORING,
                            help="zero-shot rule: softmax over all prompts, class mass summed (default), "
                                 "or prompt ensembling (class = mean prompt embedding)")  # fmt: skip
    parser.add_argument(
        "--batch-frames",
        type=at_least(1),
        default=SnippetOptions.batch_frames,
        help="frames decoded+embedded at a time (>= 1)",
    )
    parser.add_argument(
        "--workers", type=at_least(0), default=SnippetOptions.workers,
        help=f"processes decoding videos while the model embeds (default {SnippetOptions.workers})",
    )  # fmt: skip
    parser.add_argument(
        "--frame-cache", help="read snippet frames from this frame-cache folder where it covers a video"
    )
    parser.add_argument("--write-frame-cache", action="store_true", help="cache videos the frame cache lacks")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--allow-random-init", action="store_true",
                        help="accept a checkpoint that is a config.json without weights (random init)")  # fmt: skip


def at_least(low: int):
    """An argparse type: an integer >= `low` (a bad value is argparse's one-line usage error, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def overrides_of(pairs: dict[str, object], rest: list[str]) -> list[str]:
    """Explicit options as config overrides, then the user's own (which win)."""
    result = []
    for key, value in pairs.items():
        if value is not None:
            result += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    return result + list(rest)


def load_checkpoint_run(args, pairs: dict[str, object], rest: list[str]):
    from fgclip.builders import load_run

    run = load_run(
        args.checkpoint,
        config=args.config,
        overrides=overrides_of(pairs, rest),
        device=args.device,
        allow_random_init=args.allow_random_init,
    )
    print(f"[fgclip] {run.load_report.summary().splitlines()[0]}; run config: {run.config_path}", flush=True)
    return run


def parse_shard(text: str | None):
    """`--shard I/N` -> Shard, or None when not given."""
    from fgclip.commands._errors import UsageError
    from fgclip.distributed import Shard

    if text is None:
        return None
    try:
        return Shard.parse(text)
    except ValueError as error:
        raise UsageError(str(error)) from None


def join_torchrun(args) -> None:
    """Under `torchrun`: join the process group and take this rank's GPU unless --device names one."""
    from fgclip.distributed import init_from_environment

    device = init_from_environment()
    if device is not None and args.device is None:
        args.device = device


def snippet_frames(args, image_size: int):
    from fgclip.data.frame_cache import FrameCache
    from fgclip.data.frames import FrameSource

    if args.write_frame_cache and not args.frame_cache:
        raise UsageError("--write-frame-cache needs --frame-cache DIR")
    cache = FrameCache(args.frame_cache) if args.frame_cache else None
    return FrameSource(image_size, cache, args.write_frame_cache)
