"""Frame cache: round trip, nearest-at-or-before selection, misses, parameter checks, atomic writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from stand_ins import index_frame, read_index  # the index as 8 gray blocks, as in test_video.py

from fgclip.data import frame_cache as frame_cache_module
from fgclip.data.frame_cache import FrameCache, FrameCacheError, FrameCacheMiss
from fgclip.data.video import VideoError, decode_frames, write_video

FPS = 25
N = 100  # 4 s


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(
        tmp_path_factory.mktemp("cache_videos") / "clip.mp4", (index_frame(i) for i in range(N)), FPS
    )


def natural_video(path, n=50):
    """Smooth moving content (gradients and a box), closer to real footage than flat blocks."""
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float32)
    frames = []
    for i in range(n):
        image = np.stack([(xx * 2 + i * 3) % 256, (yy * 2 + i) % 256, (xx + yy) % 256], -1)
        image[20 + i % 40 : 40 + i % 40, 30:60] = (200, 40, 90)
        frames.append(image.astype(np.uint8))
    return write_video(path, frames, FPS)


def test_round_trip_within_jpeg_tolerance(tmp_path):
    path = natural_video(tmp_path / "natural.mp4")
    cache = FrameCache(tmp_path / "cache", size=(64, 48))
    cache.write(path, [(0.0, 1.96)], cache_fps=0)
    times = np.arange(0, 49) / FPS
    cached = cache.read(path, times).astype(np.int16)
    decoded = decode_frames(path, times, size=(64, 48)).astype(np.int16)
    error = np.abs(cached - decoded)
    assert cached.shape == (49, 48, 64, 3)
    assert error.mean() < 3.0 and np.percentile(error, 99) < 25


def test_every_native_frame_is_exact(video, tmp_path):
    cache = FrameCache(tmp_path, size=(64, 48))
    cache.write(video, [(0.5, 2.5)], cache_fps=0)
    times = np.random.default_rng(0).uniform(0.5, 2.5, 40)
    want = [read_index(f) for f in decode_frames(video, times)]
    assert [read_index(f) for f in cache.read(video, times)] == want


def test_nearest_cached_frame_at_or_before(video, tmp_path):
    cache = FrameCache(tmp_path, size=(64, 48))
    cache.write(video, [(1.0, 3.0)], cache_fps=5)  # grid 1.0, 1.2, ..., 3.0 = native frames 25, 30, ..., 75
    times = [1.0, 1.19, 1.2, 1.21, 2.999, 3.0, 2.2 - 1e-9, 1.6]
    got = [read_index(f) for f in cache.read(video, times)]
    assert got == [25, 25, 30, 30, 70, 75, 55, 40]
    cache.write(video, [(0.0, 0.5)], cache_fps=8)  # same video, other fps: the file is replaced
    assert cache.spans(video) == ((0.0, 0.5),)
    # grid 0, .125, .25, .375, .5 -> native frames 0, 3, 6, 9, 12 (shown from 0, .12, .24, .36, .48 s).
    # Cached frames keep their native times, so 0.12 <= t < 0.125 already gets frame 3: the true frame.
    got = [read_index(f) for f in cache.read(video, [0.0, 0.119, 0.124, 0.125, 0.3, 0.5])]
    assert got == [0, 0, 3, 3, 6, 12]


def test_misses_name_video_and_time(video, tmp_path):
    cache = FrameCache(tmp_path, size=(64, 48))
    with pytest.raises(FrameCacheMiss, match="no frame cache") as info:
        cache.read(video, [1.0])
    assert str(video) in str(info.value)
    cache.write(video, [(1.0, 2.0)])
    for t in (0.5, 2.5):
        with pytest.raises(FrameCacheMiss) as info:
            cache.read(video, [1.5, t])
        assert str(video) in str(info.value) and f"{t:.6f} s" in str(info.value)
    assert isinstance(info.value, VideoError)


def test_has_merge_and_one_file_per_video(video, tmp_path):
    cache = FrameCache(tmp_path, size=(64, 48))
    assert not cache.has(video, (1.0, 2.0))
    first = cache.write(video, [(1.0, 2.0)])
    assert cache.has(video, (1.0, 2.0)) and cache.has(video, (1.2, 1.8))
    assert not cache.has(video, (0.5, 1.5))
    second = cache.write(video, [(2.0, 3.0), (0.2, 0.4)])
    assert first == second and [p.name for p in tmp_path.iterdir()] == [first.name]
    assert cache.has(video, (1.5, 2.5)) and cache.has(video, (0.2, 0.4))
    assert [read_index(f) for f in cache.read(video, [0.2, 1.0, 2.0, 3.0])] == [5, 25, 50, 75]


def test_merge_reuses_cached_frames(video, tmp_path, monkeypatch):
    cache = FrameCache(tmp_path, size=(64, 48))
    cache.write(video, [(1.0, 2.0)], cache_fps=0)
    decoded = []
    real = frame_cache_module.decode_frames

    def counting(path, times, **kwargs):
        decoded.extend(times)
        return real(path, times, **kwargs)

    monkeypatch.setattr(frame_cache_module, "decode_frames", counting)
    cache.write(video, [(1.5, 2.4)], cache_fps=0)
    assert len(decoded) == 10  # only frames 51..60; 37..50 were copied from the old file


def test_refuses_other_size(video, tmp_path):
    FrameCache(tmp_path, size=(32, 32)).write(video, [(0.0, 1.0)])
    with pytest.raises(FrameCacheError, match="32x32") as info:
        FrameCache(tmp_path, size=(224, 224)).read(video, [0.5])
    assert "224x224" in str(info.value)
    assert not FrameCache(tmp_path, size=(224, 224)).has(video, (0.0, 1.0))
    assert FrameCache(tmp_path, size=None).read(video, [0.5]).shape == (1, 32, 32, 3)
    assert FrameCache(tmp_path, size=None).read(video, [0.5], size=(32, 32)).shape == (1, 32, 32, 3)


def test_stale_cache_is_refused(tmp_path):
    path = write_video(tmp_path / "v.mp4", (index_frame(i) for i in range(50)), FPS)
    cache = FrameCache(tmp_path / "cache", size=(64, 48))
    cache.write(path, [(0.0, 1.0)])
    write_video(path, (index_frame(i) for i in range(80)), FPS)  # the video changes under the cache
    with pytest.raises(FrameCacheError, match="stale frames of .*is now .* bytes.*rebuild it"):
        cache.read(path, [0.5])


def _same_size_other_bytes(path, keep_mtime: bool) -> None:
    """Replace the video by other bytes of the same size (the first block changed), mtime kept or not."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[100:164] = bytes(255 - b for b in data[100:164])
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_a_video_replaced_by_other_bytes_of_the_same_size_is_refused(tmp_path, encoding):
    """The issue's case: size alone kept the old frames. Content is checked when the modification time moved."""
    path = write_video(tmp_path / "v.mp4", (index_frame(i) for i in range(50)), FPS)
    cache = FrameCache(tmp_path / "cache", size=(64, 48), encoding=encoding)
    file = cache.write(path, [(0.0, 1.0)])
    assert cache.read(path, [0.5]).shape == (1, 48, 64, 3)
    _same_size_other_bytes(path, keep_mtime=False)
    with pytest.raises(FrameCacheError) as error:
        cache.read(path, [0.5])
    assert str(error.value).startswith(f"{file}: stale frames of {path}: the video has other content")
    assert "fgclip data cache" in str(error.value)
    assert not cache.has(
        path, (0.0, 1.0)
    )  # eval / infer decode it instead (or rewrite with --write-frame-cache)


def test_a_copy_with_new_times_stays_fresh_and_a_write_rebuilds_stale_frames(tmp_path, video):
    path = tmp_path / "v.mp4"
    path.write_bytes(video.read_bytes())
    cache = FrameCache(tmp_path / "cache", size=(64, 48))
    file = cache.write(path, [(0.0, 1.0)], cache_fps=0)
    os.utime(path, ns=(1, 10**18))  # touched (a copy without -p), same bytes: the hash says fresh
    assert [read_index(f) for f in cache.read(path, [0.0, 0.52])] == [0, 13]
    _same_size_other_bytes(path, keep_mtime=False)
    with pytest.raises(FrameCacheError, match="stale frames"):
        cache.read(path, [0.0])
    # a write never merges into stale frames: the old file is not reused
    assert cache._compatible_header(file, path, (64, 48), 0.0) is None


@pytest.mark.parametrize("offset", [-4096, -1, 0, 10**9])
@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_frame_offsets_outside_the_frame_data_are_refused(video, tmp_path, encoding, offset):
    cache = FrameCache(tmp_path, size=(64, 48), encoding=encoding)
    file = cache.write(video, [(0.0, 0.5)], cache_fps=0)
    data = file.read_bytes()
    length, _ = frame_cache_module._TAIL.unpack(data[-frame_cache_module._TAIL.size :])
    start = len(data) - frame_cache_module._TAIL.size - length
    header = json.loads(data[start : start + length])
    header["frames"][3][1] = offset
    blob = json.dumps(header).encode()
    file.write_bytes(data[:start] + blob + frame_cache_module._TAIL.pack(len(blob), frame_cache_module._END))
    with pytest.raises(FrameCacheError, match=r"corrupt frame index: frame 3 .* outside the frame data"):
        cache.read(video, [0.0])


def test_corrupt_cache_file(video, tmp_path):
    cache = FrameCache(tmp_path, size=(64, 48))
    file = cache.write(video, [(0.0, 1.0)])
    data = file.read_bytes()
    file.write_bytes(data[: len(data) - 40])
    with pytest.raises(FrameCacheError, match=str(file.name)):
        cache.read(video, [0.5])


def test_write_is_atomic(video, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    cache = FrameCache(root, size=(64, 48))
    calls = {"n": 0}
    real = frame_cache_module._encode_jpeg

    def failing(image, quality):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("disk full")
        return real(image, quality)

    monkeypatch.setattr(frame_cache_module, "_encode_jpeg", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        cache.write(video, [(0.0, 2.0)])
    assert list(root.iterdir()) == []  # neither the cache file nor a temporary one

    monkeypatch.setattr(frame_cache_module, "_encode_jpeg", real)
    file = cache.write(video, [(0.0, 1.0)], cache_fps=0)
    before = file.read_bytes()
    calls["n"] = 0
    monkeypatch.setattr(frame_cache_module, "_encode_jpeg", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        cache.write(video, [(2.0, 3.9)], cache_fps=0)  # merging rewrite fails half way
    assert [p.name for p in root.iterdir()] == [file.name] and file.read_bytes() == before
    assert [read_index(f) for f in cache.read(video, [0.0, 0.52])] == [0, 13]


def test_raw_encoding_is_lossless_memory_mapped_and_self_describing(tmp_path):
    path = natural_video(tmp_path / "natural.mp4")
    times = np.arange(0, 49) / FPS
    raw = FrameCache(tmp_path / "raw", size=(64, 48), encoding="raw")
    file = raw.write(path, [(0.0, 1.96)], cache_fps=0)
    decoded = decode_frames(path, times, size=(64, 48))
    assert np.array_equal(raw.read(path, times), decoded)  # bit-exact: no JPEG loss
    frames = len(raw.frame_times(path))
    assert file.stat().st_size > frames * 64 * 48 * 3  # H x W x 3 bytes per frame, plus the header
    # A reader built without the option reads it too: the header says how the file is encoded.
    assert np.array_equal(FrameCache(tmp_path / "raw", size=(64, 48)).read(path, times[:5]), decoded[:5])
    jpeg = FrameCache(tmp_path / "jpeg", size=(64, 48)).write(path, [(0.0, 1.96)], cache_fps=0)
    assert jpeg.stat().st_size < file.stat().st_size / 2


def test_raw_rewrite_replaces_a_jpeg_cache_and_a_short_raw_frame_is_refused(video, tmp_path):
    FrameCache(tmp_path, size=(64, 48)).write(video, [(0.5, 1.5)], cache_fps=0)
    raw = FrameCache(tmp_path, size=(64, 48), encoding="raw")
    file = raw.write(video, [(2.0, 2.5)], cache_fps=0)  # other encoding: replaced, not merged
    assert raw.spans(video) == ((2.0, 2.5),)
    assert [read_index(f) for f in raw.read(video, [2.0, 2.48])] == [50, 62]
    header = frame_cache_module._read_header(file)
    assert header.encoding == "raw" and set(header.lengths.tolist()) == {64 * 48 * 3}
    with open(file, "r+b") as handle:  # a truncated raw file is refused, never reshaped from garbage
        handle.truncate(int(header.offsets[-1]) + 10)
    with pytest.raises(FrameCacheError):
        raw.read(video, [2.48])
    with pytest.raises(ValueError, match="encoding must be one of"):
        FrameCache(tmp_path, encoding="png")
