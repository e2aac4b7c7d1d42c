"""Track semantics: where a region is, and whether it is visible, at a time in seconds.

A track is a list of keyframes. Consecutive keyframes of one segment are linearly interpolated; a keyframe
with `enabled=False` is the last of its segment (the box is shown on that keyframe, not after it); the next
keyframe, if any, starts a new segment. A segment made of a single keyframe — the whole track when a
region was annotated once — is visible within `hold_s` seconds on either side of it.
"""

from __future__ import annotations

from collections.abc import Sequence

from fgclip.data.records import Box, Keyframe, Track

_EPS = 1e-6


def segments(track: Track) -> list[tuple[Keyframe, ...]]:
    """Split a track into its visible segments."""
    result: list[tuple[Keyframe, ...]] = []
    current: list[Keyframe] = []
    for keyframe in track.keyframes:
        current.append(keyframe)
        if not keyframe.enabled:
            result.append(tuple(current))
            current = []
    if current:
        result.append(tuple(current))
    return result


def segment_extent(segment: Sequence[Keyframe], hold_s: float) -> tuple[float, float]:
    if len(segment) == 1:
        return segment[0].time_s - hold_s, segment[0].time_s + hold_s
    return segment[0].time_s, segment[-1].time_s


def visible_windows(track: Track, hold_s: float) -> list[tuple[float, float]]:
    """The [start, end] intervals (seconds) in which the track is visible, one per segment."""
    return [segment_extent(s, hold_s) for s in segments(track)]


def track_extent(track: Track, hold_s: float) -> tuple[float, float]:
    """First and last instant at which the track is visible."""
    extents = visible_windows(track, hold_s)
    return min(e[0] for e in extents), max(e[1] for e in extents)


def box_at(track: Track, time_s: float, hold_s: float) -> Box | None:
    """The box at `time_s`, or None where the region is not visible."""
    for segment in segments(track):
        start, end = segment_extent(segment, hold_s)
        if start - _EPS <= time_s <= end + _EPS:
            return _interpolate(segment, time_s)
    return None


def _interpolate(segment: Sequence[Keyframe], time_s: float) -> Box:
    if len(segment) == 1 or time_s <= segment[0].time_s:
        return segment[0].box
    for before, after in zip(segment, segment[1:], strict=False):
        if time_s <= after.time_s:
            span = after.time_s - before.time_s
            w = (time_s - before.time_s) / span if span > 0 else 1.0
            return tuple(a + w * (b - a) for a, b in zip(before.box, after.box, strict=True))  # type: ignore[return-value]
    return segment[-1].box
