"""`fgclip` command line. `main(argv)` is importable, so tests run the real entry point.

Each verb is a module of `fgclip.commands` (its parser and its steps); this file only dispatches.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from fgclip.commands._errors import exit_code, user_error_message

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded at run time
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    from fgclip.commands import build_parser

    _console_logging()
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args, rest) or 0
    except (ValueError, RuntimeError, OSError) as error:  # every project error class is one of these
        message = user_error_message(error)  # bad input: one line; None: a bug, which keeps its traceback
        if message is None:
            raise
        command = _command_name(parser, sys.argv[1:] if argv is None else argv)
        print(f"{command}: {message}", file=sys.stderr, flush=True)
        return exit_code(error)


def _command_name(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """`fgclip data check` for `fgclip data check run.yaml ...`: the words that chose a (sub)parser."""
    words = [a for a in argv if not a.startswith("-")]
    name = parser.prog
    for word in words:
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
        if word not in choices:
            break
        parser, name = choices[word], choices[word].prog
    return name


class _Console(logging.Handler):
    """Library modules log (`fgclip.*` loggers); on the command line their INFO lines are console lines.
    Written to the current `sys.stdout` at each record (not the one at start-up), so redirection works."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
        print(self.format(record), file=stream, flush=True)


def _console_logging() -> None:
    logger = logging.getLogger("fgclip")
    if not any(isinstance(h, _Console) for h in logger.handlers):
        logger.addHandler(_Console())
    logger.setLevel(logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
