"""`fgclip doctor CONFIG [--key value ...]`: the start-up checks of `fgclip train` and the usual ways a run
is wasted, reported with severities and numbers before anything is trained (`fgclip.tools.doctor`)."""

from __future__ import annotations

import os


def register(commands) -> None:
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
    doctor.set_defaults(run=run, accepts_overrides=True)


def run(args, overrides) -> int:
    from fgclip.config import load_config
    from fgclip.tools.doctor import format_findings, run_doctor

    config = load_config(args.config, overrides)
    world_size = args.world_size if args.world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    findings = run_doctor(config, world_size=world_size, read_data=not args.no_data)
    print(format_findings(findings, as_json=args.json))
    return 1 if any(f.severity == "error" for f in findings) else 0
