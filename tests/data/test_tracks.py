"""Track semantics on known values: interpolation, `enabled: false` ends a segment, single-keyframe hold."""

import pytest

from fgclip.data.records import Keyframe, Track
from fgclip.data.tracks import box_at, segments, track_extent


def _kf(t, x, enabled=True):
    return Keyframe(t, (x, 0.0, x + 0.2, 0.5), enabled)


def test_linear_interpolation_between_keyframes():
    track = Track((_kf(1.0, 0.0), _kf(3.0, 0.4)))
    assert box_at(track, 2.0, hold_s=0.5) == pytest.approx((0.2, 0.0, 0.4, 0.5))
    assert box_at(track, 1.0, hold_s=0.5) == pytest.approx((0.0, 0.0, 0.2, 0.5))
    assert box_at(track, 3.0, hold_s=0.5) == pytest.approx((0.4, 0.0, 0.6, 0.5))
    assert box_at(track, 0.9, hold_s=0.5) is None  # before the first keyframe of a multi-keyframe track
    assert box_at(track, 3.1, hold_s=0.5) is None


def test_disabled_keyframe_ends_the_segment_and_a_later_one_restarts():
    track = Track((_kf(0.0, 0.0), _kf(1.0, 0.2, enabled=False), _kf(2.0, 0.6), _kf(3.0, 0.8)))
    assert [len(s) for s in segments(track)] == [2, 2]
    assert box_at(track, 1.0, 0.5) == pytest.approx((0.2, 0.0, 0.4, 0.5))  # shown on the closing keyframe
    assert box_at(track, 1.5, 0.5) is None  # gap: not interpolated across a disabled keyframe
    assert box_at(track, 2.5, 0.5) == pytest.approx((0.7, 0.0, 0.9, 0.5))
    assert track_extent(track, 0.5) == (0.0, 3.0)


def test_single_keyframe_is_held_around_its_time():
    track = Track((_kf(4.0, 0.1),))
    assert box_at(track, 3.6, hold_s=0.5) == pytest.approx((0.1, 0.0, 0.3, 0.5))
    assert box_at(track, 4.5, hold_s=0.5) is not None
    assert box_at(track, 4.6, hold_s=0.5) is None
    assert track_extent(track, 0.25) == (3.75, 4.25)
