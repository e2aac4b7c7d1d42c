"""Loss-curve PNG from `metrics.jsonl`, with the memory-bank switch-on marked."""

from __future__ import annotations

import json
from pathlib import Path

from fgclip.losses.terms import LOSS_TERMS

CURVES = ("loss", *(term.log_key for term in LOSS_TERMS))


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of a metrics file; when a step appears twice (a resumed run re-logged it), the last one wins."""
    rows: dict[int, dict] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["step"]] = row
    return [rows[step] for step in sorted(rows)]


def plot_loss_curves(
    metrics_path: str | Path, out_path: str | Path, memory_bank_warmup_steps: int | None
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
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
