"""`fgclip train CONFIG [--key value ...]`: the run itself is `fgclip.tools.training_run.train` (the demo, the
benchmarks and the tests run it too)."""

from __future__ import annotations

from fgclip.config import load_config
from fgclip.distributed import is_rank_zero
from fgclip.tools.training_run import train


def register(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train from a YAML config; extra --key value pairs override it",
        epilog="Extra --key value pairs override the config (e.g. --max_steps 200 --train.lora '{rank: 8}'). "
        "Multi-GPU: torchrun --nproc_per_node N -m fgclip.cli train CONFIG",
        allow_abbrev=False,  # an override key must never be taken for an abbreviation of --resume
    )
    parser.add_argument("config")
    parser.add_argument(
        "--resume",
        metavar="latest|CHECKPOINT",
        help="continue a run: 'latest' = the numerically latest checkpoint in output_dir, or a checkpoint folder",
    )
    parser.add_argument(
        "--resume-changed",
        "--resume_changed",
        action="store_true",
        help="with --resume: accept settings or data that differ from the checkpoint's (each change is logged "
        "and recorded in OUTPUT_DIR/resume_changes.jsonl); without it such a resume is refused",
    )
    parser.add_argument(
        "--overwrite_output_dir",
        "--overwrite-output-dir",
        action="store_true",
        help="delete an earlier run's checkpoints, metrics and model in output_dir first",
    )
    parser.set_defaults(run=run, accepts_overrides=True)


def run(args, overrides) -> int:
    if args.resume is not None:
        overrides = [*overrides, "--train.resume", args.resume]
    if args.overwrite_output_dir:
        overrides = [*overrides, "--train.overwrite_output_dir", "true"]
    if args.resume_changed:
        overrides = [*overrides, "--train.resume_changed", "true"]
    outcome = train(load_config(args.config, overrides))  # bad input: one line, by fgclip.cli.main
    if is_rank_zero():
        print(f"trained {outcome.global_step} optimizer steps; final model: {outcome.model_dir}")
    return 0
