"""Loss-curve PNG from `metrics.jsonl`, with the memory-bank switch-on marked."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from fgclip.losses.terms import LOSS_TERMS

CURVES = ("loss", *(term.log_key for term in LOSS_TERMS))


def warn_on_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def read_metrics(path: str | Path, warn: Callable[[str], None] = warn_on_stderr) -> list[dict]:
    """Rows of a metrics file; when a step appears twice (a resumed run re-logged it), the last one wins.

    A line that is not a JSON object with an integer "step" (what a crash or a full disk leaves mid-write)
    is skipped and reported through `warn` as `FILE:LINE: ...`; the rows around it are kept.
    """
    rows: dict[int, dict] = {}
    # errors="replace": a write cut inside a multi-byte character must not make the whole file unreadable
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        row = _parse_row(line)
        if row is None:
            warn(f"{path}:{number}: torn line skipped (not a JSON metrics row: {line[:60]!r})")
        else:
            rows[row["step"]] = row
    return [rows[step] for step in sorted(rows)]


def _parse_row(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(row, dict) or type(row.get("step")) is not int:
        return None
    return row


def plot_loss_curves(
    metrics_path: str | Path,
    out_path: str | Path,
    memory_bank_warmup_steps: int | None,
    warn: Callable[[str], None] = warn_on_stderr,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path, warn)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in CURVES:
        points = [(r["step"], r[name]) for r in rows if name in r]
        if points:
            ax.plot(*zip(*points, strict=True), label=name, linewidth=1.2 if name == "loss" else 0.9)
    switch_on = _bank_switch_step(rows, memory_bank_warmup_steps)
    if switch_on is not None:
        ax.axvline(switch_on, color="gray", linestyle="--", linewidth=1)
        ax.annotate(
            "memory bank on", (switch_on, ax.get_ylim()[1]), rotation=90, va="top", ha="right", fontsize=8
        )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return Path(out_path)


def _bank_switch_step(rows: list[dict], warmup: int | None) -> int | None:
    enabled = [r["step"] for r in rows if r.get("memory_bank/enabled", 0) >= 1]
    if enabled:
        return enabled[0]
    return None
