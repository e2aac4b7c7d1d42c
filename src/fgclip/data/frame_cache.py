"""Frame cache: the frames of chosen time spans, pre-extracted, resized and JPEG-encoded, one file per video.

Repeated epochs read the same clips again and again; decoding them each time costs a seek plus on average half
a group of pictures per target. `FrameCache.write` decodes each span once (sparse decoding, `fgclip.data.video`)
at `cache_fps` frames per second (0 = every native frame), resizes to the model input (`size`, default 224x224,
squashed like `decode_frames(size=...)`), JPEG-encodes with Pillow (quality 90) and stores everything in ONE
file per video. `FrameCache.read(video, times)` then returns, for each time, the cached frame nearest at or
before it -- no video decoding at all.

Trade-off (numbers from `python benchmarks/decode_speed.py`: 5-minute 640x480 30 fps H.264 source, GOP 250,
224x224 frames, 8 fps, q90, 2-core box):
- speed: 16 frames of a 10 s clip read in ~13 ms, against ~0.4 s for sparse decoding and ~5 s for decoding
  from the start of the video up to the clip (3.5 min in): ~400x the baseline, ~30x sparse decoding;
- size: ~16.5 KB per cached frame, i.e. ~1.3 MB per 10 s clip at 8 fps; a whole 5-minute video at 8 fps is
  40 MB (the source mp4 is 8.6 MB). `cache_fps=0` stores every native frame: 30/8 = 3.75x more for a 30 fps
  source. Writing costs one sparse decode of the spans plus ~1 ms of JPEG encoding per frame;
- timing error: a read returns the cached frame at or before t, i.e. at worst the frame displayed at the last
  grid point `span_start + k / cache_fps` <= t: up to 1/cache_fps (125 ms at 8 fps) earlier than the frame
  `decode_frames` would return (cached frames keep their native timestamps, so within that bound the true
  frame is returned whenever it was cached); `cache_fps=0` is exact;
- JPEG loss: quality 90 with Pillow's default 4:2:0 chroma subsampling: mean absolute error ~4.5 gray levels
  on the benchmark's noisy synthetic frames (mostly the per-pixel noise JPEG smooths away), ~2.5 on the tests'
  small frames with sharp coloured edges; at the benchmark's clip times, timing adds ~1 more.

File format (`<root>/<stem>-<sha1 of the absolute video path, 16 hex>.fgframes`)::

    b"FGFRAME1" | JPEG 0 | JPEG 1 | ... | header JSON (utf-8) | header length (u64 little-endian) | b"FGFREND1"

The header (at the end, so frames stream straight to disk) holds the parameters (`width`, `height`,
`cache_fps`, `quality`), the video's absolute path and byte size, the cached `spans` and one
`[time_s, offset, length]` per frame, sorted by time (`time_s` is the native presentation time of the frame,
offsets are absolute in the file). A write goes to a temporary file in the same folder, is fsynced and then
`os.replace`d onto the final name: readers see the previous file or the new one, never a partial one. Writing
spans to a video that already has a cache with the same parameters merges them (frames already cached are
copied, not decoded again); a cache with other parameters is replaced. Reading refuses a cache whose frame
size differs from the one asked for, and stale frames: the header records the video's size, modification time
and a sha256 of its first and last 64 KiB; a different size is stale, an unchanged time is trusted, a changed
time is settled by the hash (a copy with new times stays fresh; other bytes of the same size do not). A
dataset built on a cache checks every video once at start (`stale_videos`). Frame offsets and lengths are
range-checked against the frame data when the header is read (a negative offset would read the header as
pixels). Files written before these fields are checked by size only.

`encoding="raw"` stores each frame as its H x W x 3 uint8 bytes instead of a JPEG (header `"encoding": "raw"`;
files without the field are JPEG) and reads them through a memory map: no decoding at all, lossless, 150,528
bytes per 224x224 frame (~11x a q90 JPEG). For when JPEG decoding, not the GPU, bounds a loader worker
(`python benchmarks/feed_rate.py`). Reading needs no option: the header says how a file is encoded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fgclip.data.video import VideoError, decode_frames, video_frame_times

__all__ = ["FrameCache", "FrameCacheError", "FrameCacheMiss", "staleness", "video_identity"]

_MAGIC = b"FGFRAME1"
_END = b"FGFREND1"
_TAIL = struct.Struct("<Q8s")
_VERSION = 1
_EPS = 1e-6
_DECODE_CHUNK = 128  # frames decoded (and held in memory) at a time while writing
_HEADER_CACHE_SIZE = 128
ENCODINGS = ("jpeg", "raw")


def _checked_spans(video: Path, spans, cache_fps: float, size) -> list[tuple[float, float]]:
    if size is None:
        raise ValueError(f"{video}: FrameCache.write needs a frame size (width, height)")
    if not np.isfinite(cache_fps) or cache_fps < 0:
        raise ValueError(f"{video}: cache_fps must be >= 0 (0 = every native frame), got {cache_fps}")
    clean = []
    for span in spans:
        s, e = (float(v) for v in span)
        if not (np.isfinite(s) and np.isfinite(e)) or e < s:
            raise ValueError(f"{video}: bad span {span!r} (need finite start <= end)")
        clean.append((s, e))
    if not clean:
        raise ValueError(f"{video}: no spans to cache")
    if not video.is_file():
        raise VideoError(f"{video}: video file not found")
    return clean


class FrameCacheError(VideoError):
    """A cache file is unusable: corrupt, written with other parameters, or its video changed."""


class FrameCacheMiss(FrameCacheError):
    """A requested time lies outside every cached span (or the video has no cache file)."""


@dataclass(frozen=True)
class _Header:
    video: str
    video_bytes: int
    width: int
    height: int
    cache_fps: float
    quality: int
    spans: tuple[tuple[float, float], ...]
    times: np.ndarray  # (N,) float64, ascending
    offsets: np.ndarray  # (N,) int64
    lengths: np.ndarray  # (N,) int64
    encoding: str = "jpeg"  # "jpeg" or "raw" (H x W x 3 uint8 bytes)
    video_mtime_ns: int | None = None  # None: written before the content check (size only)
    video_blocks_sha256: str | None = None  # sha256 of the video's first and last IDENTITY_BLOCK bytes

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": _VERSION,
                "video": self.video,
                "video_bytes": self.video_bytes,
                "video_mtime_ns": self.video_mtime_ns,
                "video_blocks_sha256": self.video_blocks_sha256,
                "width": self.width,
                "height": self.height,
                "cache_fps": self.cache_fps,
                "quality": self.quality,
                "encoding": self.encoding,
                "spans": [list(s) for s in self.spans],
                "frames": [
                    [float(t), int(o), int(n)]
                    for t, o, n in zip(self.times, self.offsets, self.lengths, strict=True)
                ],
            }
        ).encode()

    def covers(self, time_s: float) -> bool:
        return any(s - _EPS <= time_s <= e + _EPS for s, e in self.spans)


def _encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _decode_jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _merge_spans(spans: Iterable[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    merged: list[list[float]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1] + _EPS:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return tuple((float(s), float(e)) for s, e in merged)


_header_cache: OrderedDict[tuple[str, int, int], _Header] = OrderedDict()
_header_lock = threading.Lock()


def _read_header(file: Path) -> _Header:
    st = file.stat()  # FileNotFoundError: no cache
    key = (str(file), st.st_size, st.st_mtime_ns)
    with _header_lock:
        if key in _header_cache:
            _header_cache.move_to_end(key)
            return _header_cache[key]
    try:
        with open(file, "rb") as handle:
            if handle.read(len(_MAGIC)) != _MAGIC or st.st_size < len(_MAGIC) + _TAIL.size:
                raise FrameCacheError(f"{file}: not a frame cache file")
            handle.seek(st.st_size - _TAIL.size)
            length, end = _TAIL.unpack(handle.read(_TAIL.size))
            if end != _END or length > st.st_size - len(_MAGIC) - _TAIL.size:
                raise FrameCacheError(f"{file}: truncated or corrupt frame cache (bad trailer)")
            handle.seek(st.st_size - _TAIL.size - length)
            raw = json.loads(handle.read(length))
        if raw.get("version") != _VERSION:
            raise FrameCacheError(f"{file}: frame cache version {raw.get('version')}, expected {_VERSION}")
        frames = np.asarray(raw["frames"], dtype=np.float64).reshape(-1, 3)
        header = _Header(
            video=raw["video"],
            video_bytes=int(raw["video_bytes"]),
            width=int(raw["width"]),
            height=int(raw["height"]),
            cache_fps=float(raw["cache_fps"]),
            quality=int(raw["quality"]),
            spans=tuple((float(s), float(e)) for s, e in raw["spans"]),
            times=frames[:, 0].copy(),
            offsets=frames[:, 1].astype(np.int64),
            lengths=frames[:, 2].astype(np.int64),
            encoding=str(raw.get("encoding", "jpeg")),
            video_mtime_ns=_optional(raw.get("video_mtime_ns"), int),
            video_blocks_sha256=_optional(raw.get("video_blocks_sha256"), str),
        )
        if header.encoding not in ENCODINGS:
            raise FrameCacheError(f"{file}: unknown frame encoding {header.encoding!r} (known: {ENCODINGS})")
        _check_frame_index(file, header, body_end=st.st_size - _TAIL.size - length)
    except (ValueError, KeyError, TypeError, struct.error, RecursionError) as exc:
        raise FrameCacheError(f"{file}: corrupt frame cache header ({exc}); {_REBUILD}") from exc
    with _header_lock:
        _header_cache[key] = header
        while len(_header_cache) > _HEADER_CACHE_SIZE:
            _header_cache.popitem(last=False)
    return header


def _optional(value, kind):
    return None if value is None else kind(value)


def _check_frame_index(file: Path, header: _Header, body_end: int) -> None:
    """Every frame lies inside the frame data (after the magic, before the header), times finite and ascending:
    a negative offset would read the file's own magic and header as pixels."""
    starts, ends = header.offsets, header.offsets + header.lengths
    bad = (starts < len(_MAGIC)) | (header.lengths <= 0) | (ends > body_end) | ~np.isfinite(header.times)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise FrameCacheError(
            f"{file}: corrupt frame index: frame {k} (at {header.times[k]} s) spans bytes [{starts[k]}, {ends[k]}), "
            f"outside the frame data [{len(_MAGIC)}, {body_end}); {_REBUILD}"
        )
    if len(header.times) > 1 and not (np.diff(header.times) > 0).all():
        raise FrameCacheError(f"{file}: corrupt frame index: frame times not ascending; {_REBUILD}")


IDENTITY_BLOCK = 64 * 1024  # bytes hashed at each end of a video: its container header and its tail
_REBUILD = "rebuild it (fgclip data cache ... --out CACHE_ROOT) or delete the file"
_fresh: dict[tuple, str | None] = {}  # (video, size, mtime_ns, recorded hash) -> staleness; hashed once
_fresh_lock = threading.Lock()


@dataclass(frozen=True)
class VideoIdentity:
    bytes: int
    mtime_ns: int
    blocks_sha256: str


def video_identity(video: Path) -> VideoIdentity:
    st = video.stat()
    return VideoIdentity(st.st_size, st.st_mtime_ns, _blocks_sha256(video, st.st_size))


def _blocks_sha256(video: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(video, "rb") as handle:
        digest.update(handle.read(IDENTITY_BLOCK))
        if size > IDENTITY_BLOCK:
            handle.seek(max(size - IDENTITY_BLOCK, IDENTITY_BLOCK))
            digest.update(handle.read(IDENTITY_BLOCK))
    return digest.hexdigest()


def staleness(header: _Header, video: Path) -> str | None:
    """Why the cached frames are no longer the video's, or None. Size first; an unchanged modification time is
    trusted (as make and rsync do); a changed one is settled by the content hash, so a copy with new times stays
    fresh and different bytes of the same size do not. A video absent here is not checked (the cache may travel
    without it)."""
    try:
        st = video.stat()
    except FileNotFoundError:
        return None
    if st.st_size != header.video_bytes:
        return f"the video is now {st.st_size} bytes, the cache was written for {header.video_bytes}"
    if header.video_blocks_sha256 is None or st.st_mtime_ns == header.video_mtime_ns:
        return None
    key = (str(video), st.st_size, st.st_mtime_ns, header.video_blocks_sha256)
    with _fresh_lock:
        if key in _fresh:
            return _fresh[key]
    verdict = None
    if _blocks_sha256(video, st.st_size) != header.video_blocks_sha256:
        verdict = "the video has other content than when the cache was written (same size, modified since)"
    with _fresh_lock:
        _fresh[key] = verdict
    return verdict


def stale_videos(cache: FrameCache, videos) -> list[str]:
    """'<video>: <why>' for each video whose cached frames are stale (once per video, at start-up)."""
    found = []
    for video in sorted(videos):
        try:
            cache.check_fresh(video)
        except FrameCacheMiss:
            continue  # reported by the caller's coverage check, or at the first read
        except FrameCacheError as error:
            found.append(str(error))
    return found


class FrameCache:
    """Frames of chosen spans per video, under `root`; see the module docstring.

    `size=(width, height)`, `cache_fps` and `quality` are the defaults of `write`; `size` is also what `read`
    expects unless told otherwise (None: accept whatever size the file holds).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        size: tuple[int, int] | None = (224, 224),
        cache_fps: float = 8.0,
        quality: int = 90,
        encoding: str = "jpeg",
    ):
        if encoding not in ENCODINGS:
            raise ValueError(f"FrameCache: encoding must be one of {ENCODINGS}, got {encoding!r}")
        self.encoding = encoding
        self.root = Path(root)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.cache_fps = float(cache_fps)
        self.quality = int(quality)

    def path_for(self, video_path: str | Path) -> Path:
        video = os.path.abspath(video_path)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(video).stem)[:64]
        digest = hashlib.sha1(video.encode()).hexdigest()[:16]
        return self.root / f"{stem}-{digest}.fgframes"

    # ----------------------------------------------------------------------------------------------------
    # writing

    def write(
        self,
        video_path: str | Path,
        spans: Sequence[tuple[float, float]],
        *,
        cache_fps: float | None = None,
        size: tuple[int, int] | None = None,
    ) -> Path:
        """Cache the frames of `spans` (seconds) of a video; returns the cache file. Atomic (temp + rename).
        Frames already in the video's cache file (same size, rate and encoding) are copied, not decoded again."""
        video = Path(os.path.abspath(video_path))
        cache_fps = self.cache_fps if cache_fps is None else float(cache_fps)
        size = self.size if size is None else (int(size[0]), int(size[1]))
        clean = _checked_spans(video, spans, cache_fps, size)
        file = self.path_for(video)
        identity = video_identity(video)  # before decoding: a video changed meanwhile is then found stale
        old = self._compatible_header(file, video, size, cache_fps)
        native = video_frame_times(video)
        wanted = native[self._frames_for_spans(native, clean, cache_fps)]
        old_by_time = {} if old is None else {float(t): k for k, t in enumerate(old.times)}
        to_decode = np.array([t for t in wanted if float(t) not in old_by_time])
        times = np.asarray(sorted(set(wanted.tolist()) | set(old_by_time)), dtype=np.float64)
        spans_out = _merge_spans(list(old.spans if old is not None else ()) + clean)

        def write_body(handle) -> _Header:
            entries = self._copy_frames(handle, file, old, old_by_time)
            entries.update(self._decode_frames(handle, video, to_decode, size))
            return _Header(
                video=str(video), video_bytes=identity.bytes, width=size[0], height=size[1],
                video_mtime_ns=identity.mtime_ns, video_blocks_sha256=identity.blocks_sha256,
                cache_fps=cache_fps, quality=self.quality, spans=spans_out, times=times,
                offsets=np.asarray([entries[float(t)][0] for t in times], dtype=np.int64),
                lengths=np.asarray([entries[float(t)][1] for t in times], dtype=np.int64),
                encoding=self.encoding,
            )  # fmt: skip

        self._write_atomically(file, write_body)
        return file

    def _write_atomically(self, file: Path, write_body) -> None:
        """magic, frames, header JSON, tail -> a temp file in the cache folder, fsynced, renamed over `file`."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            dir=self.root, prefix=f".{file.name}.", suffix=".tmp", delete=False
        )
        tmp = Path(handle.name)
        try:
            with handle:
                handle.write(_MAGIC)
                blob = write_body(handle).to_json()
                handle.write(blob)
                handle.write(_TAIL.pack(len(blob), _END))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @staticmethod
    def _copy_frames(handle, file: Path, old, old_by_time: dict) -> dict[float, tuple[int, int]]:
        """{time: (offset, length)} of the frames copied from the existing cache file."""
        entries: dict[float, tuple[int, int]] = {}
        if old is None or not old_by_time:
            return entries
        with open(file, "rb") as src:
            for t, k in sorted(old_by_time.items()):
                src.seek(int(old.offsets[k]))
                data = src.read(int(old.lengths[k]))
                entries[t] = (handle.tell(), len(data))
                handle.write(data)
        return entries

    def _decode_frames(self, handle, video: Path, times: np.ndarray, size) -> dict[float, tuple[int, int]]:
        """{time: (offset, length)} of the frames decoded (in chunks, so memory stays bounded) and encoded."""
        entries: dict[float, tuple[int, int]] = {}
        for start in range(0, len(times), _DECODE_CHUNK):
            chunk = times[start : start + _DECODE_CHUNK]
            for t, image in zip(chunk, decode_frames(video, chunk, size=size), strict=True):
                data = self._encode(image)
                entries[float(t)] = (handle.tell(), len(data))
                handle.write(data)
        return entries

    def _encode(self, image: np.ndarray) -> bytes:
        if self.encoding == "raw":
            return np.ascontiguousarray(image, dtype=np.uint8).tobytes()  # (H, W, 3) row-major
        return _encode_jpeg(image, self.quality)

    @staticmethod
    def _frames_for_spans(native: np.ndarray, spans, cache_fps: float) -> np.ndarray:
        """Native frame numbers to cache: those displayed at the grid points (cache_fps > 0) or all of them."""
        numbers = []
        for s, e in spans:
            if cache_fps > 0:
                grid = s + np.arange(int(np.floor((e - s) * cache_fps + 1e-9)) + 1) / cache_fps
            else:
                grid = native[(native > s + _EPS) & (native <= e + _EPS)]
                grid = np.concatenate([[s], grid])
            numbers.append(np.maximum(np.searchsorted(native, grid + _EPS, side="right") - 1, 0))
        return np.unique(np.concatenate(numbers))

    def _compatible_header(self, file: Path, video: Path, size, cache_fps: float) -> _Header | None:
        """The existing cache to merge into, or None (absent, other parameters, other video content)."""
        try:
            old = _read_header(file)
        except (FileNotFoundError, FrameCacheError):
            return None
        same = (
            (old.width, old.height) == tuple(size)
            and old.cache_fps == cache_fps
            and old.quality == self.quality
            and old.encoding == self.encoding
            and old.video == str(video)
            and staleness(old, video) is None
        )
        return old if same else None

    # ----------------------------------------------------------------------------------------------------
    # reading

    def _header_for(self, video_path: str | Path, size: tuple[int, int] | None) -> tuple[Path, Path, _Header]:
        video = Path(os.path.abspath(video_path))
        file = self.path_for(video)
        try:
            header = _read_header(file)
        except FileNotFoundError:
            raise FrameCacheMiss(f"{video}: no frame cache ({file} does not exist)") from None
        want = self.size if size is None else (int(size[0]), int(size[1]))
        if want is not None and (header.width, header.height) != tuple(want):
            raise FrameCacheError(
                f"{file}: cache of {video} was written with frame size {header.width}x{header.height}, "
                f"but {want[0]}x{want[1]} was asked for; rewrite the cache"
            )
        if header.video != str(video):
            raise FrameCacheError(f"{file}: holds frames of {header.video}, not of {video}")
        stale = staleness(header, video)
        if stale is not None:
            raise FrameCacheError(f"{file}: stale frames of {video}: {stale}; {_REBUILD}")
        return video, file, header

    def check_fresh(self, video_path: str | Path) -> None:
        """Refuse (FrameCacheError naming the video) when the video changed since its frames were cached."""
        self._header_for(video_path, None if self.size is None else self.size)

    def has(
        self, video_path: str | Path, span: tuple[float, float], *, size: tuple[int, int] | None = None
    ) -> bool:
        """True when a usable cache (right size, same video) covers the whole span."""
        try:
            _, _, header = self._header_for(video_path, size)
        except FrameCacheError:
            return False
        s, e = (float(v) for v in span)
        return any(a - _EPS <= s and e <= b + _EPS for a, b in header.spans)

    def spans(self, video_path: str | Path) -> tuple[tuple[float, float], ...]:
        """The cached spans of a video (empty when it has no cache)."""
        try:
            return _read_header(self.path_for(video_path)).spans
        except FileNotFoundError:
            return ()

    def frame_times(self, video_path: str | Path, *, size: tuple[int, int] | None = None) -> np.ndarray:
        """Presentation times (s, ascending) of a video's cached frames; `read(t)` returns the last one <= t."""
        _, _, header = self._header_for(video_path, size)
        return header.times.copy()

    def read(
        self,
        video_path: str | Path,
        times_s: Sequence[float] | np.ndarray,
        *,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB: for each time, the cached frame nearest at or before it."""
        video, file, header = self._header_for(video_path, size)
        times = np.asarray(times_s, dtype=np.float64).reshape(-1)
        out = np.empty((len(times), header.height, header.width, 3), dtype=np.uint8)
        picks = np.empty(len(times), dtype=np.int64)
        for i, t in enumerate(times):
            k = int(np.searchsorted(header.times, t + _EPS, side="right")) - 1
            if not np.isfinite(t) or not header.covers(float(t)) or k < 0:
                shown = ", ".join(f"[{s:.3f}, {e:.3f}]" for s, e in header.spans[:5])
                more = f" and {len(header.spans) - 5} more" if len(header.spans) > 5 else ""
                raise FrameCacheMiss(
                    f"{video}: time {t:.6f} s lies outside every cached span ({shown}{more}) of {file}"
                )
            picks[i] = k
        if header.encoding == "raw":
            return _read_raw(file, header, picks, out)
        with open(file, "rb") as handle:
            for k in np.unique(picks):
                handle.seek(int(header.offsets[k]))
                data = handle.read(int(header.lengths[k]))
                if len(data) != header.lengths[k]:
                    raise FrameCacheError(f"{file}: truncated (frame at {header.times[k]:.6f} s)")
                try:
                    image = _decode_jpeg(data)
                except OSError as exc:
                    raise FrameCacheError(
                        f"{file}: corrupt JPEG for the frame at {header.times[k]:.6f} s"
                    ) from exc
                if image.shape != out.shape[1:]:
                    raise FrameCacheError(f"{file}: frame at {header.times[k]:.6f} s has shape {image.shape}")
                out[picks == k] = image
        return out


def _read_raw(file: Path, header: _Header, picks: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Raw frames straight from a memory map of the file (the OS page cache serves repeated epochs)."""
    frame_bytes = header.height * header.width * 3
    mapped = np.memmap(file, dtype=np.uint8, mode="r")
    for k in np.unique(picks):
        start, length = int(header.offsets[k]), int(header.lengths[k])
        if length != frame_bytes or start + length > mapped.shape[0]:
            raise FrameCacheError(
                f"{file}: raw frame at {header.times[k]:.6f} s is {length} bytes at offset {start}, expected "
                f"{frame_bytes} ({header.width}x{header.height}x3) inside the file"
            )
        out[picks == k] = mapped[start : start + length].reshape(header.height, header.width, 3)
    return out
