"""`fgclip inspect MODEL_OR_CHECKPOINT`: the heads table (projection heads, temporal module, temperatures)
and how the checkpoint loads (loaded / initialised / missing / unexpected keys)."""

from __future__ import annotations

import json


def register(commands) -> None:
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
    inspect.set_defaults(run=run)


def run(args, _) -> int:
    print(run_inspect(args.model, args.json, allow_partial_load=args.allow_partial_load))
    return 0


def run_inspect(path: str, as_json: bool, allow_partial_load: bool = False) -> str:
    """The text (or JSON) `fgclip inspect PATH` prints."""
    from fgclip.losses.heads import format_heads, head_rows, heads_report
    from fgclip.model.loading import load_pretrained

    model, report = load_pretrained(path, allow_partial_load=allow_partial_load)
    if as_json:
        return json.dumps(heads_report(model, report), indent=2)
    return "\n".join(["heads and temperatures:", format_heads(head_rows(model)), "", report.summary()])
