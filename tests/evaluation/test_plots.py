"""Figures: annotated runs are shaded frame-exactly; the PNGs are written."""

import numpy as np

from fgclip.evaluation.figures import _runs, plot_roc, plot_timeline


def test_runs_of_abnormal_frames_are_inclusive():
    assert _runs(np.array([0, 1, 1, 0, 1])) == [(1, 2), (4, 4)]
    assert _runs(np.array([1, 1])) == [(0, 1)]
    assert _runs(np.zeros(3, dtype=np.int8)) == []


def test_figures_are_written(tmp_path):
    scores = np.linspace(0, 1, 40)
    timeline = plot_timeline(scores, 25.0, tmp_path / "t.png", title="v", truth=(scores > 0.5).astype(np.int8),
                             regions=[(0.2, 0.8, 0.9, "A")])  # fmt: skip
    roc = plot_roc({"all": (np.array([0, 0.5, 1]), np.array([0, 0.8, 1]), 0.65)}, tmp_path / "r.png")
    assert timeline.read_bytes()[:8] == roc.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
