"""`fgclip merge OUT`: join the shards that `--shard I/N` jobs wrote into OUT into the single-process result.

    fgclip export-features run/model --video-list all.txt --out feats --shard 0/4   # ... 1/4, 2/4, 3/4
    fgclip merge feats        # -> feats/features.json (+ list CSVs), as one process would have written it
    fgclip eval run/model --out ev --shard 0/4                                      # ... 1/4, 2/4, 3/4
    fgclip merge ev           # -> ev/eval.json, ROC, scores, timelines: frame AUC over all videos at once

It refuses while a shard is missing or when the shards were run with different settings.
"""

from __future__ import annotations

from pathlib import Path

from fgclip.commands._errors import UsageError


def register(commands) -> None:
    merge = commands.add_parser("merge", help="join the outputs of --shard I/N jobs (export-features, eval)")
    merge.add_argument("out", help="the --out folder the shards wrote into")
    merge.add_argument("--timelines", type=int, default=6, help="eval: score-timeline PNGs (default 6)")
    merge.set_defaults(run=run)


def run(args, _=None) -> int:
    from fgclip.evaluation.export import merge_feature_shards
    from fgclip.evaluation.shards import has_eval_shards

    out = Path(args.out)
    if not out.is_dir():
        raise UsageError(f"{out}: not a folder")
    if has_eval_shards(out):
        return _merge_eval(out, args.timelines)
    path = merge_feature_shards(out)
    print(f"[fgclip] merged the export shards of {out} -> {path}")
    return 0


def _merge_eval(out: Path, timelines: int) -> int:
    from fgclip.evaluation.output import format_table, write_evaluation
    from fgclip.evaluation.shards import merge_eval_shards

    evaluation = merge_eval_shards(out)
    written = write_evaluation(evaluation, out, timelines=timelines)
    print(format_table(evaluation.report))
    for name, path in written.items():
        print(f"[fgclip] {name}: {path}")
    return 0
