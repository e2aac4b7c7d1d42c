"""PNG figures: frame-level ROC curves and per-video anomaly-score timelines (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], out_path: str | Path) -> Path:
    """curves: label -> (fpr, tpr, auc)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, linewidth=1.3, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", linewidth=1, label="chance")
    ax.set_xlabel("false positive rate (frames)")
    ax.set_ylabel("true positive rate (frames)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return Path(out_path)


def plot_timeline(
    frame_scores: np.ndarray,
    fps: float,
    out_path: str | Path,
    *,
    title: str,
    truth: np.ndarray | None = None,
    regions: list[tuple[float, float, float, str]] | None = None,
) -> Path:
    """Anomaly score per frame over time; annotated abnormal frames shaded; region scores as bars.

    regions: (t_start, t_end, score, label) per scored box.
    """
    plt = _pyplot()
    times = np.arange(len(frame_scores)) / fps
    fig, ax = plt.subplots(figsize=(10, 3))
    for i, (first, last) in enumerate(_runs(truth) if truth is not None else []):
        # frames first..last (inclusive) span [first / fps, (last + 1) / fps)
        ax.axvspan(first / fps, (last + 1) / fps, color="tab:red", alpha=0.18, linewidth=0,
                   label="annotated anomaly" if i == 0 else None)  # fmt: skip
    ax.step(times, frame_scores, where="post", color="tab:blue", linewidth=1.2, label="anomaly score")
    for i, (start, end, score, label) in enumerate(regions or []):
        ax.hlines(
            score, start, end, color="tab:orange", linewidth=3, label="region score" if i == 0 else None
        )
        ax.annotate(label, (start, score), xytext=(0, 3), textcoords="offset points", fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, max(times[-1] + 1 / fps, 1e-6))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("P(anomaly)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return Path(out_path)


def plot_anomaly_maps(frames: list[np.ndarray], titles: list[str], out_path: str | Path) -> Path:
    """A row of frames (H, W, 3) uint8 with their anomaly maps already blended in (`overlay_map`)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(frames), figsize=(2.2 * len(frames), 2.5), squeeze=False)
    for ax, frame, title in zip(axes[0], frames, titles, strict=True):
        ax.imshow(frame)
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    fig.suptitle(
        "anomaly map: P(anomaly) of the region head over a grid of boxes; red = the frame's max", fontsize=8
    )
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return Path(out_path)


def _runs(truth: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) frame of each run of 1s."""
    edges = np.diff(np.concatenate([[0], truth.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1, strict=True))
