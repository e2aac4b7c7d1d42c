"""Sparse decoding on stand-in videos whose frames carry their own index in their pixels."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest
from stand_ins import index_frame, read_index

from fgclip.data import video as video_module
from fgclip.data.video import (
    DecodeStats,
    VideoError,
    decode_frames,
    iter_frames,
    probe_video,
    video_frame_times,
    write_video,
)


def indices(frames: np.ndarray) -> list[int]:
    return [read_index(f) for f in frames]


def expected(times, fps: float, num_frames: int) -> list[int]:
    return np.clip(np.floor(np.asarray(times) * fps + 1e-6).astype(int), 0, num_frames - 1).tolist()


NO_SCENECUT = {"x264-params": "scenecut=0"}  # keyframes exactly every gop_size frames


def keyframe_pts(path) -> list[int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [p.pts for p in container.demux(stream) if p.is_keyframe and p.pts is not None]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    made = {
        "v25": write_video(root / "v25.mp4", (index_frame(i) for i in range(100)), 25),
        "v30": write_video(root / "v30.mp4", (index_frame(i) for i in range(90)), 30),
        "gop250": write_video(
            root / "gop250.mp4", (index_frame(i) for i in range(1500)), 25, gop_size=250, options=NO_SCENECUT
        ),
        "gop25": write_video(
            root / "gop25.mp4", (index_frame(i) for i in range(1500)), 25, gop_size=25, options=NO_SCENECUT
        ),
    }
    return made


# ---------------------------------------------------------------------------------------------------------
# exact frames


@pytest.mark.parametrize("name,fps,n", [("v25", 25, 100), ("v30", 30, 90)])
def test_exact_native_frames_for_unsorted_repeated_times(videos, name, fps, n):
    ks = [0, 1, 7, 8, 33, 34, n - 2, n - 1]
    times = [k / fps for k in ks]  # exactly on frame boundaries (float error must not matter)
    times += [k / fps - 1e-3 for k in ks[1:]]  # just below: the previous frame
    times += [
        8 / fps,
        0.0,
        3 * 8 / fps,
        (n - 1) / fps + 0.5 / fps,
    ]  # repeats; inside the last frame's duration
    times += [-0.5]  # before the first frame: the first frame
    rng = np.random.default_rng(0)
    times += rng.uniform(0, (n - 1) / fps, 20).tolist()
    order = rng.permutation(len(times))
    times = np.asarray(times)[order]
    frames = decode_frames(videos[name], times)
    assert frames.shape == (len(times), 48, 64, 3) and frames.dtype == np.uint8
    assert indices(frames) == expected(times, fps, n)
    assert read_index(frames[list(times).index(8 / fps)]) == 8


def test_empty_times(videos):
    assert decode_frames(videos["v25"], []).shape == (0, 48, 64, 3)
    assert decode_frames(videos["v25"], [], size=(16, 8)).shape == (0, 8, 16, 3)


def test_size_resizes_in_the_decoder_without_crop(videos):
    times = [0.0, 1.0, 2.52]
    for size in [(32, 24), (40, 40), (128, 20)]:
        frames = decode_frames(videos["v25"], times, size=size)
        assert frames.shape == (3, size[1], size[0], 3)
        assert indices(frames) == [0, 25, 63]  # whole blocks still visible: squashed, not cropped


def test_threading_does_not_change_pixels(videos, monkeypatch):
    times = np.random.default_rng(1).uniform(0, 3.9, 30)
    outputs = []
    for thread_type in ["NONE", "SLICE", "FRAME", "AUTO"]:
        monkeypatch.setattr(video_module, "DECODER_THREAD_TYPE", thread_type)
        outputs.append(decode_frames(videos["v25"], times))
    for other in outputs[1:]:
        np.testing.assert_array_equal(outputs[0], other)


def test_single_threaded_conversion_gives_the_default_conversions_pixels(videos):
    """`_to_rgb` converts with `threads=1`; the pixels must be those of the default `frame.to_ndarray`."""
    with av.open(str(videos["v25"])) as container:
        reference = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(videos["v25"])) as container:
        resized = [f.to_ndarray(width=40, height=24, format="rgb24") for f in container.decode(video=0)]
    times = np.arange(100) / 25
    np.testing.assert_array_equal(decode_frames(videos["v25"], times), np.stack(reference))
    np.testing.assert_array_equal(decode_frames(videos["v25"], times, size=(40, 24)), np.stack(resized))


# ---------------------------------------------------------------------------------------------------------
# sparsity


def test_window_in_long_gop_decodes_little(videos):
    path = videos["gop250"]
    assert keyframe_pts(path) == [i * 250 * 512 for i in range(6)]  # 1500 frames, a keyframe every 250
    rng = np.random.default_rng(2)
    times = rng.uniform(35.0, 45.0, 16)  # window starts at native frame 875, inside the GOP of frame 750
    stats = DecodeStats()
    frames = decode_frames(path, times, stats=stats)
    assert indices(frames) == expected(times, 25, 1500)
    window_start = 875
    assert stats.frames_decoded <= (875 - 750) + 10 * 25 + 16  # from the keyframe to the last target only
    assert stats.frames_decoded < (window_start + len(times)) / 2  # "far fewer" than decoding from the start
    assert stats.duplicate_frames == 0
    assert stats.seeks == 2  # to the keyframe at 750, then over the tail of that GOP to the one at 1000
    assert stats.frames_converted == len(set(indices(frames)))


def test_far_targets_each_cost_at_most_one_gop(videos):
    path, gop = videos["gop25"], 25
    times = [45.3, 5.3, 25.3, 5.3]  # 20 s apart, unsorted, one repeat
    stats = DecodeStats()
    frames = decode_frames(path, times, stats=stats)
    assert indices(frames) == expected(times, 25, 1500)
    assert stats.frames_decoded <= 3 * gop
    assert stats.seeks > 0
    assert stats.duplicate_frames == 0
    assert stats.packets_demuxed < 3 * gop + 10  # the skipped GOPs were not even demuxed


def test_many_random_targets_decode_no_frame_twice(videos):
    path = videos["gop25"]
    times = np.random.default_rng(3).uniform(0, 59.99, 300)
    stats = DecodeStats()
    frames = decode_frames(path, times, stats=stats)
    assert indices(frames) == expected(times, 25, 1500)
    assert stats.duplicate_frames == 0
    assert stats.frames_decoded <= 1500


def test_index_is_cached_per_file(videos):
    video_module.clear_index_cache()
    first, second = DecodeStats(), DecodeStats()
    decode_frames(videos["v30"], [1.0], stats=first)
    decode_frames(videos["v30"], [2.0], stats=second)
    assert (first.index_scans, second.index_scans) == (1, 0)


def test_the_index_cache_is_bounded_by_bytes_not_files(videos, tmp_path, monkeypatch):
    """A dataset cycling through more videos than a count-bounded LRU held rescanned every file each read."""
    copies = [tmp_path / f"copy{i}.mp4" for i in range(100)]
    for copy in copies:
        copy.write_bytes(videos["v25"].read_bytes())
    video_module.clear_index_cache()
    for _ in range(2):
        stats = DecodeStats()
        for copy in copies:
            decode_frames(copy, [1.0], stats=stats)
    assert stats.index_scans == 0  # the second pass over 100 files found every index
    one = video_module._index_cache[next(iter(video_module._index_cache))].nbytes
    monkeypatch.setattr(video_module, "_INDEX_CACHE_BYTES", 10 * one)
    decode_frames(videos["v30"], [1.0])
    assert len(video_module._index_cache) <= 10  # a new entry evicts the oldest beyond the byte bound


# ---------------------------------------------------------------------------------------------------------
# B-frames, variable frame rate


def test_bframes_are_returned_by_presentation_time(videos):
    path = videos["v25"]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.pts is not None]
    assert any(b < a for a, b in zip(pts[:-1], pts[1:], strict=True)), (
        "the stand-in should have B-frames (pts out of decode order)"
    )
    times = np.arange(100) / 25
    frames = decode_frames(path, times[::-1])
    assert indices(frames) == list(range(99, -1, -1))


def write_vfr(path, durations_ms: list[int]) -> list[int]:
    """Frames with irregular pts (ms); returns the pts of every frame."""
    pts, t = [], 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.thread_count = 1
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "18"}
        for i, duration in enumerate(durations_ms):
            frame = av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            pts.append(t)
            t += duration
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return pts


def test_variable_frame_rate(tmp_path):
    rng = np.random.default_rng(4)
    durations = rng.choice([10, 20, 33, 40, 100, 250], size=60).tolist()
    written = write_vfr(tmp_path / "vfr.mp4", durations)
    times_written = np.asarray(written) / 1000
    frame_times = video_frame_times(tmp_path / "vfr.mp4")
    np.testing.assert_allclose(frame_times, times_written, atol=1e-9)
    probes = np.concatenate([times_written, times_written[1:] - 1e-3, times_written + 0.004, [0.0]])
    probes = rng.permutation(probes)
    want = np.searchsorted(times_written, probes + 1e-6, side="right") - 1
    frames = decode_frames(tmp_path / "vfr.mp4", probes)
    assert indices(frames) == want.tolist()


# ---------------------------------------------------------------------------------------------------------
# iter_frames


def test_iter_frames_range_every_and_size(videos):
    stats = DecodeStats()
    got = list(iter_frames(videos["gop25"], start_s=10.0, end_s=11.0, every=3, size=(32, 24), stats=stats))
    assert [i for i, _, _ in got] == list(range(250, 275, 3))
    assert [round(t * 25) for _, t, _ in got] == list(range(250, 275, 3))
    assert [read_index(a) for _, _, a in got] == list(range(250, 275, 3))
    assert all(a.shape == (24, 32, 3) for _, _, a in got)
    assert stats.seeks == 1 and stats.frames_converted == len(got)
    assert stats.frames_decoded <= 25  # keyframe at 250: nothing before the range
    whole = list(iter_frames(videos["v30"]))
    assert [i for i, _, _ in whole] == list(range(90))
    assert [read_index(a) for _, _, a in whole] == list(range(90))


def test_iter_frames_past_end(videos):
    with pytest.raises(VideoError, match="past the end"):
        list(iter_frames(videos["v25"], start_s=10.0))


# ---------------------------------------------------------------------------------------------------------
# errors


def test_target_past_the_end_names_time_path_and_duration(videos):
    path = videos["v25"]  # 100 frames: the last is shown from 3.96 s to 4.0 s
    assert indices(decode_frames(path, [3.999, 4.0])) == [99, 99]
    with pytest.raises(VideoError) as info:
        decode_frames(path, [1.0, 4.1, 2.0])
    message = str(info.value)
    assert str(path) in message and "4.100000 s" in message and "4.000000 s" in message


def test_non_finite_time_is_an_error(videos):
    with pytest.raises(VideoError, match="finite"):
        decode_frames(videos["v25"], [0.0, float("nan")])


def test_missing_file(tmp_path):
    path = tmp_path / "nope.mp4"
    for call in (lambda: decode_frames(path, [0.0]), lambda: probe_video(path)):
        with pytest.raises(VideoError, match="not found") as info:
            call()
        assert str(path) in str(info.value)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(5).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    for call in (lambda: decode_frames(path, [0.0]), lambda: probe_video(path)):
        with pytest.raises(VideoError) as info:
            call()
        assert str(path) in str(info.value)


def test_truncated_mp4(videos, tmp_path):
    data = videos["v25"].read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    for call in (lambda: decode_frames(path, [0.0, 1.0]), lambda: probe_video(path)):
        with pytest.raises(VideoError) as info:
            call()
        assert str(path) in str(info.value)


def test_no_video_stream(tmp_path):
    path = tmp_path / "audio.wav"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoError, match="no video stream") as info:
        decode_frames(path, [0.0])
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# probing


def test_probe_normal_files(videos):
    info = probe_video(videos["v25"])
    assert (info.width, info.height, info.fps, info.num_frames, info.num_frames_exact) == (
        64,
        48,
        25.0,
        100,
        True,
    )
    assert info.duration_s == pytest.approx(4.0)
    info = probe_video(videos["gop250"])
    assert (info.num_frames, info.duration_s) == (1500, pytest.approx(60.0))
    assert probe_video(videos["v30"]).fps == pytest.approx(30.0)


class _NonSeekable(io.RawIOBase):
    """A write-only sink the muxer cannot seek back in: it never gets to write the duration."""

    def __init__(self, handle):
        self.handle = handle

    def writable(self):
        return True

    def seekable(self):
        return False

    def write(self, data):
        return self.handle.write(data)


def _write_stream(target, container_format: str, n: int = 100) -> None:
    with av.open(target, mode="w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.thread_count = 1
        for i in range(n):
            for packet in stream.encode(av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_probe_without_duration_metadata_uses_packets(tmp_path):
    path = tmp_path / "streamed.mkv"
    with open(path, "wb") as handle:
        _write_stream(_NonSeekable(handle), "matroska")
    with av.open(str(path)) as container:  # really no duration or frame count anywhere in the header
        stream = container.streams.video[0]
        assert stream.duration is None and container.duration is None and not stream.frames
    info = probe_video(path)
    assert info.duration_s == pytest.approx(4.0)
    assert (info.num_frames, info.num_frames_exact, info.fps) == (100, True, pytest.approx(25.0))
    times = [0.0, 1.0, 3.99, 2.5]
    assert indices(decode_frames(path, times)) == expected(times, 25, 100)


def test_raw_h264_probes_but_cannot_be_decoded_by_time(tmp_path):
    path = tmp_path / "raw.h264"
    _write_stream(str(path), "h264")
    with av.open(str(path)) as container:  # an elementary stream: no duration, no frame count, no timestamps
        stream = container.streams.video[0]
        assert stream.duration is None and container.duration is None and not stream.frames
        assert all(p.pts is None and p.dts is None for p in container.demux(stream))
    info = probe_video(path)
    assert (info.num_frames, info.num_frames_exact) == (100, True)
    assert info.duration_s == pytest.approx(4.0)
    with pytest.raises(VideoError, match="timestamps") as exc:
        decode_frames(path, [1.0])
    assert str(path) in str(exc.value)
