"""Where a clip's T frames go: every region of the clip gets at least one frame on which it is visible.

Why: an abnormal clip spans the union of its tracks plus context, and real clips have single-keyframe regions
tens of seconds apart (the first entry of ucf_fgclip_with_v3.json: keyframes at 7.7 s, 32.6 s and 76.5 s, each
visible for +-0.5 s). T = 8 uniform samples over that ~75 s span are ~9 s apart, so a 1 s hold window is hit
with probability ~1/9 per region: the regions would be dropped almost every time. We keep the clip whole (the
global caption describes all of it, so splitting it into per-region clips would pair each piece with a caption
that is partly about other pieces) and move samples instead: after the uniform draw, each region that no sample
sees gets one sample moved into one of its visible windows — the sample nearest to the window among those not
already the only witness of another region. Frames stay in time order; the rest of the span keeps its uniform
coverage. Train: a random window and a uniform time in its middle half (away from the window's edges, so the
frame actually shown — at or before the time — still lies inside); eval: the longest window's centre (for a
single keyframe: the keyframe itself). A region that cannot get a frame (T smaller than the number of regions,
or a window outside the video) stays unseen and the dataset counts it in `dropped_regions`, never silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fgclip.data.records import Track
from fgclip.data.tracks import box_at, visible_windows


def reserve_region_times(
    times: np.ndarray,
    tracks: Sequence[Track],
    span: tuple[float, float],
    hold_s: float,
    draw: Callable[[], float] | None = None,
) -> np.ndarray:
    """Sorted sample times (T,) on which each track is visible at least once, where that is possible.

    `draw` returns a uniform number in [0, 1) (training); None is the deterministic evaluation choice.
    """
    times = np.array(times, dtype=np.float64)
    witness = np.zeros(len(times), dtype=bool)  # times that are some region's only reserved witness
    for track in tracks:
        seen = [i for i, t in enumerate(times) if box_at(track, float(t), hold_s) is not None]
        if seen:
            witness[seen[0]] = True
            continue
        windows = [(max(a, span[0]), min(b, span[1])) for a, b in visible_windows(track, hold_s)]
        windows = [(a, b) for a, b in windows if b >= a]
        free = np.flatnonzero(~witness)
        if not windows or len(free) == 0:
            continue  # cannot be seen: counted as dropped by the dataset
        target = _time_in(windows, draw)
        i = free[int(np.argmin(np.abs(times[free] - target)))]
        times[i] = target
        witness[i] = True
    return np.sort(times)


def _time_in(windows: list[tuple[float, float]], draw: Callable[[], float] | None) -> float:
    if draw is None:
        a, b = max(windows, key=lambda w: w[1] - w[0])
        return (a + b) / 2
    a, b = windows[min(int(draw() * len(windows)), len(windows) - 1)]
    return a + (0.25 + 0.5 * draw()) * (b - a)


def snap_to_frames(frame_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The presentation time of the frame shown at each time (the last frame at or before it)."""
    k = np.searchsorted(frame_times, np.asarray(times) + 1e-6, side="right") - 1
    return frame_times[np.clip(k, 0, len(frame_times) - 1)]
