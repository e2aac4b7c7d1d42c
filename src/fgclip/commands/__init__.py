"""The CLI verbs, one module each: `register(subparsers)` adds its parser, `run(args, overrides)` runs it.

Only the module of the verb being run is imported (a verb module imports what it needs, torch and
transformers included); `fgclip --help` imports them all.
"""

from __future__ import annotations

import argparse
import importlib

# verb on the command line -> module; order = order in `fgclip --help`
VERBS = {
    "train": "train",
    "doctor": "doctor",
    "demo": "demo",
    "inspect": "inspect",
    "data": "data",
    "eval": "eval",
    "infer": "infer",
    "export-features": "export_features",
    "merge": "merge",
    "head": "head",
    "pretrain-standin": "pretrain_standin",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fgclip", description="Fine-grained video-text alignment for CLIP.")
    subparsers = parser.add_subparsers(title="commands")
    chosen = next((a for a in argv or [] if not a.startswith("-")), None)
    verbs = [chosen] if chosen in VERBS else list(VERBS)
    for verb in verbs:
        importlib.import_module(f"fgclip.commands.{VERBS[verb]}").register(subparsers)
    return parser
