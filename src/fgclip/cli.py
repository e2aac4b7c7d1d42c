"""`fgclip` command line. `main(argv)` is importable, so tests run the real entry point."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded at run time
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    return args.run(args, rest) or 0


def _parser() -> argparse.ArgumentParser:
    from fgclip.commands import data_show

    parser = argparse.ArgumentParser(prog="fgclip", description="Fine-grained video-text alignment for CLIP.")
    commands = parser.add_subparsers(title="commands")

    train = commands.add_parser(
        "train",
        help="train from a YAML config; extra --key value pairs override it",
        epilog="Extra --key value pairs override the config (e.g. --max_steps 200 --train.lora '{rank: 8}'). "
        "Multi-GPU: torchrun --nproc_per_node N -m fgclip.cli train CONFIG",
        allow_abbrev=False,  # an override key must never be taken for an abbreviation of --resume
    )
    train.add_argument("config")
    train.add_argument(
        "--resume",
        metavar="latest|CHECKPOINT",
        help="continue a run: 'latest' = the numerically latest checkpoint in output_dir, or a checkpoint folder",
    )
    train.add_argument(
        "--overwrite_output_dir",
        "--overwrite-output-dir",
        action="store_true",
        help="delete an earlier run's checkpoints, metrics and model in output_dir first",
    )
    train.set_defaults(run=_train, accepts_overrides=True)

    doctor = commands.add_parser(
        "doctor",
        help="check a config (and its data) before training: bank warm-up, negatives, precision, heads, leakage",
        epilog="Extra --key value pairs override the config, as for train. Exit code 1 when an error is found.",
        allow_abbrev=False,
    )
    doctor.add_argument("config")
    doctor.add_argument(
        "--world-size", type=int, default=None, help="GPUs the run will use (default: $WORLD_SIZE or 1)"
    )
    doctor.add_argument(
        "--no-data", action="store_true", help="skip the checks that read manifests and videos"
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(run=_doctor, accepts_overrides=True)

    demo = commands.add_parser(
        "demo", help="synthetic data -> tiny CLIP -> train -> evaluate (a few minutes on CPU)"
    )
    demo.add_argument("--out", default="demo_out")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--num-videos", type=int, default=200)
    demo.set_defaults(run=_demo, accepts_overrides=True)

    inspect = commands.add_parser(
        "inspect",
        help="projection heads, temperatures and key accounting of a checkpoint (HF dir or OpenAI .pt)",
    )
    inspect.add_argument("model", metavar="MODEL_OR_CHECKPOINT")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.add_argument(
        "--allow-partial-load",
        action="store_true",
        help="show a checkpoint with missing backbone weights instead of refusing it",
    )
    inspect.set_defaults(run=_inspect)

    data = commands.add_parser("data", help="data tools").add_subparsers(title="data commands")
    synth = data.add_parser("synth", help="write the synthetic video benchmark")
    synth.add_argument("--out", required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--num-videos", type=int, default=200)
    synth.add_argument("--size", type=int, default=64)
    synth.add_argument("--fps", type=float, default=25.0)
    synth.add_argument("--duration", type=float, default=4.0, help="seconds per video")
    synth.add_argument("--test-fraction", type=float, default=0.25)
    synth.set_defaults(run=_synth)
    _data_check_parser(data)
    _data_convert_parsers(data)
    _data_cache_parser(data)
    data_show.register(data)
    _add_eval_commands(commands)
    return parser


def _reading_arguments(parser: argparse.ArgumentParser, *, videos: bool = True) -> None:
    """Flags shared by the data commands that read manifests."""
    if videos:
        parser.add_argument(
            "--video-root", default=".", help="folder the manifests' video paths are relative to"
        )
        parser.add_argument(
            "--path-remap",
            action="append",
            metavar="OLD=NEW",
            help="replace a video path prefix (repeatable)",
        )
    parser.add_argument(
        "--annotation-fps", type=float, default=25.0,
        help="grid of keyframe frame numbers for manifests that do not declare one (default 25)",
    )  # fmt: skip
    parser.add_argument(
        "--video-prefix", default="", help="normal-clip dicts: prefix of their bare video names"
    )
    parser.add_argument(
        "--open-track-end", choices=("video_end", "last_keyframe"), default="video_end",
        help="Label Studio tracks ending on an enabled keyframe: visible to the video end (as in Label Studio)",
    )  # fmt: skip
    parser.add_argument("--caption-field", help="Label Studio: task data field with the global caption")


def _sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--context-s", type=float, default=2.0, help="abnormal clips: context per side (s)")
    parser.add_argument(
        "--single-keyframe-hold-s", type=float, default=0.5, help="single-keyframe visibility (s)"
    )


def _data_check_parser(data) -> None:
    check = data.add_parser(
        "check",
        help="validate manifests and videos, summarise them, report test-set leakage (exit 1 on errors)",
    )
    check.add_argument("manifests", nargs="+", metavar="MANIFEST")
    _reading_arguments(check)
    _sampling_arguments(check)
    check.add_argument("--no-video", action="store_true", help="check annotations only (no video is opened)")
    check.add_argument(
        "--hard-negatives", action="append", metavar="FILE", help="hard-negative file (repeatable)"
    )
    check.add_argument(
        "--test-list", metavar="FILE", help="test videos (e.g. Anomaly_Test.txt): leakage report"
    )
    check.add_argument("--max-regions", type=int, default=4)
    check.add_argument("--num-frames", type=int, default=8)
    check.add_argument("--tokenizer", metavar="DIR", help="count caption lengths in this tokenizer's tokens")
    check.add_argument("--json", action="store_true", help="print the full report as JSON")
    check.set_defaults(run=lambda args, _: _data_command("run_check", args))


def _data_convert_parsers(data) -> None:
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
        _reading_arguments(convert, videos=False)
        if fmt == "labelstudio":
            convert.set_defaults(annotation_fps=None)  # taken from the export's own frame/time
        convert.set_defaults(run=lambda args, _, fmt=fmt: _data_command("run_convert", args, fmt))


def _data_cache_parser(data) -> None:
    cache = data.add_parser("cache", help="pre-extract every clip's frames so training skips decoding")
    cache.add_argument("manifests", nargs="+", metavar="MANIFEST")
    cache.add_argument("--out", required=True, help="cache folder (data.frame_cache)")
    cache.add_argument("--cache-fps", type=float, default=8.0, help="frames per second kept (0: every frame)")
    cache.add_argument("--size", type=int, default=224, help="frame side in pixels (the model's image size)")
    cache.add_argument("--skip-invalid", action="store_true", help="leave out bad manifest entries")
    _reading_arguments(cache)
    _sampling_arguments(cache)
    cache.set_defaults(run=lambda args, _: _data_command("run_cache", args))


def _data_command(name: str, args, *extra) -> int:
    """Run a data command; bad input (a refused manifest, a missing file) is printed and exits 1."""
    from fgclip.data import commands
    from fgclip.data.errors import ManifestError

    try:
        return getattr(commands, name)(args, *extra)
    except (ManifestError, FileNotFoundError) as error:
        print(f"fgclip data: {error}", file=sys.stderr)
        return 1


def _train(args, overrides) -> int:
    from fgclip.config import ConfigError, load_config
    from fgclip.distributed import is_rank_zero
    from fgclip.training.nonfinite import NonFiniteLossError
    from fgclip.training.run import train

    if args.resume is not None:
        overrides = [*overrides, "--train.resume", args.resume]
    if args.overwrite_output_dir:
        overrides = [*overrides, "--train.overwrite_output_dir", "true"]
    try:
        outcome = train(load_config(args.config, overrides))
    except (ConfigError, NonFiniteLossError) as error:
        print(f"fgclip train: {error}", file=sys.stderr)
        return 1
    if is_rank_zero():
        print(f"trained {outcome.global_step} optimizer steps; final model: {outcome.model_dir}")
    return 0


def _doctor(args, overrides) -> int:
    from fgclip.config import ConfigError, load_config
    from fgclip.doctor import format_findings, run_doctor

    try:
        config = load_config(args.config, overrides)
    except ConfigError as error:
        print(f"fgclip doctor: {error}", file=sys.stderr)
        return 1
    world_size = args.world_size if args.world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    findings = run_doctor(config, world_size=world_size, read_data=not args.no_data)
    print(format_findings(findings, as_json=args.json))
    return 1 if any(f.severity == "error" for f in findings) else 0


def _demo(args, overrides) -> int:
    from fgclip.demo import run_demo

    run_demo(args.out, seed=args.seed, num_videos=args.num_videos, overrides=overrides)
    return 0


def _inspect(args, _) -> int:
    from fgclip.inspect import run_inspect
    from fgclip.model.errors import CheckpointError

    try:
        print(run_inspect(args.model, args.json, allow_partial_load=args.allow_partial_load))
    except (CheckpointError, FileNotFoundError) as error:
        print(f"fgclip inspect: {error}", file=sys.stderr)
        return 1
    return 0


def _synth(args, _) -> int:
    from fgclip.data.synth import generate

    summary = generate(
        args.out,
        seed=args.seed,
        num_videos=args.num_videos,
        size=args.size,
        fps=args.fps,
        duration_s=args.duration,
        test_fraction=args.test_fraction,
    )
    print(summary)
    return 0


def _add_eval_commands(commands) -> None:
    from fgclip.evaluation.commands import add_eval_parsers

    add_eval_parsers(commands)


if __name__ == "__main__":
    sys.exit(main())
