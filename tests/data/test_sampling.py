"""Frame placement: far-apart single-keyframe regions each get a frame where they are visible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fgclip.data.dataset import SamplingOptions, clip_span, sample_times
from fgclip.data.records import ABNORMAL, Clip, Keyframe, Region, Track
from fgclip.data.sampling import reserve_region_times, snap_to_frames
from fgclip.data.tracks import box_at

BOX = (0.1, 0.2, 0.6, 0.9)
HOLD = 0.5


def _single(t: float) -> Track:
    return Track((Keyframe(t, BOX),))


# The first entry of ucf_fgclip_with_v3.json: keyframes at annotation frames 192, 816, 1912 (25 fps).
FAR_APART = [_single(192 / 25), _single(816 / 25), _single(1912 / 25)]


def _clip(tracks) -> Clip:
    regions = tuple(Region(f"r{i}", t, ABNORMAL) for i, t in enumerate(tracks))
    return Clip("m.json:0", None, "v.mp4", "an event", regions, ABNORMAL)


def _seen(tracks, times) -> list[bool]:
    return [any(box_at(t, float(x), HOLD) is not None for x in times) for t in tracks]


def test_uniform_sampling_alone_misses_far_apart_regions():
    span = clip_span(_clip(FAR_APART), duration_s=120.0, options=SamplingOptions(context_s=2.0))
    assert span == pytest.approx((192 / 25 - 2.5, 1912 / 25 + 2.5))
    assert _seen(FAR_APART, sample_times(span, 8)) == [False, False, False]


def test_eval_reserves_each_region_its_keyframe_deterministically():
    span = (5.18, 78.98)
    times = reserve_region_times(sample_times(span, 8), FAR_APART, span, HOLD)
    assert _seen(FAR_APART, times) == [True, True, True]
    assert len(times) == 8 and np.all(np.diff(times) >= 0)  # T kept, time order kept
    for track in FAR_APART:
        assert track.keyframes[0].time_s in times.tolist()  # single keyframe: the keyframe itself
    assert np.array_equal(times, reserve_region_times(sample_times(span, 8), FAR_APART, span, HOLD))
    moved = set(times.tolist()) - set(sample_times(span, 8).tolist())
    assert len(moved) == 3  # only the three reserved samples moved; the rest stay uniform


def test_training_reserves_random_times_inside_the_windows():
    span = (5.18, 78.98)
    torch.manual_seed(0)
    for _ in range(50):
        uniform = sample_times(span, 8, torch.rand(8))
        times = reserve_region_times(uniform, FAR_APART, span, HOLD, lambda: float(torch.rand(())))
        assert _seen(FAR_APART, times) == [True, True, True]
        for track, seen_before in zip(FAR_APART, _seen(FAR_APART, uniform), strict=True):
            if not seen_before:  # reserved: inside the middle half of the +-0.5 s window
                t = track.keyframes[0].time_s
                assert any(abs(x - t) <= 0.25 + 1e-9 for x in times)


def test_a_region_already_seen_keeps_its_witness():
    long_track = Track((Keyframe(0.0, BOX), Keyframe(10.0, BOX)))
    tracks = [long_track, _single(9.0)]
    times = reserve_region_times(sample_times((0.0, 10.0), 2), tracks, (0.0, 10.0), HOLD)
    assert _seen(tracks, times) == [True, True]


def test_more_regions_than_frames_leaves_the_rest_unseen():
    times = reserve_region_times(sample_times((5.18, 78.98), 2), FAR_APART, (5.18, 78.98), HOLD)
    assert (
        sum(_seen(FAR_APART, times)) == 2
    )  # T = 2: the third region is dropped (and counted) by the dataset


def test_window_outside_the_span_cannot_be_reserved():
    tracks = [_single(50.0)]
    times = reserve_region_times(sample_times((0.0, 10.0), 4), tracks, (0.0, 10.0), HOLD)
    assert _seen(tracks, times) == [False]


def test_snap_to_frames_is_the_frame_shown():
    frames = np.arange(10) / 30.0
    assert snap_to_frames(frames, np.array([0.0, 0.05, 1 / 30, 0.299, 5.0])).tolist() == pytest.approx(
        [0.0, 1 / 30, 1 / 30, 8 / 30, 9 / 30]
    )
