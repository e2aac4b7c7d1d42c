"""Video I/O with PyAV: sparse decoding of chosen frames, sequential iteration, probing, writing.

Time convention
---------------
Times are seconds from the start of the video stream (`stream.start_time`; 0 for almost every mp4). The frame
returned for a time t is the frame *displayed* at t: the last frame whose presentation timestamp (pts) is
<= t + 1e-6 s, so on a 25 fps video t = 8/25 is native frame 8 even with float error. A time before the first
frame gives the first frame; a time more than one frame duration past the last frame is a `VideoError`.
Every failure is a `VideoError` naming the file; nothing falls back to black or repeated frames.

How `decode_frames` stays sparse
--------------------------------
A per-file *index* is built by one demux-only pass over the video packets (no decoding) and cached per file
in an LRU bounded by the indexes' bytes (`_INDEX_CACHE_BYTES`, ~50 bytes per packet: 64 MB holds ~11 hours
of 30 fps video per process), keyed by path, size and mtime. A bound by entries thrashed: a dataset cycling
through more videos than entries rescanned every file on every read. It holds, per packet in decode
order, pts / dts / keyframe flag, and from it the exact presentation timeline. We chose the scan over the
"seek when the gap exceeds one GOP as measured so far" heuristic because:

- it resolves every target to an exact native frame before anything is decoded: a target past the end fails
  before any work, and no look-ahead frame has to be decoded to learn that a frame was the last one <= t;
- it knows the keyframe of every target's group of pictures (GOP), so a seek happens exactly when it skips
  packets and can never land inside frames already decoded (the heuristic can only guess, and a wrong guess
  either re-decodes frames or decodes whole GOPs that hold no target);
- it is cheap enough: demuxing reads the file but decodes nothing, ~8-10 us per packet in PyAV 18, i.e.
  70-90 ms for a 5-minute 30 fps 640x480 mp4 (9000 packets) on the 2-core benchmark box -- the time to decode
  ~100 of its frames, under half a GOP -- and paid once per file per process (LRU). The benchmark numbers
  (`benchmarks/decode_speed.py`) include it in every sparse run.

`decode_frames` sorts the unique target frames and makes ONE forward pass: for each target it seeks
(`container.seek` to the keyframe, in stream time_base, `backward=True, any_frame=False`) only when that
keyframe lies after the next packet the demuxer would return -- i.e. only when the seek skips packets that
would otherwise be decoded for nothing (the rest of the current GOP and any whole GOP without a target).
Seeking to the *next* keyframe, not only past it, is deliberate: it also spares the tail of the current GOP
(up to GOP-1 frames) for the price of an index lookup and a decoder flush. After a seek the packets are
matched against the index; packets before the wanted keyframe are dropped undecoded, an overshoot falls back
to an earlier keyframe. Frames come out of the decoder in presentation order (B-frames are reordered by the
decoder) and are identified by pts, never by decode order. Decoded frames that are not targets are dropped
without RGB conversion; the memory held is the output array plus the frames in flight in the decoder.

Threading: `DECODER_THREAD_TYPE` (default "NONE": one decoding thread per reader). FFmpeg's decoders are
bit-exact whatever the threading and frames still come out in presentation order, so every setting gives the
same pixels (tested). On the 2-core box (`benchmarks/decode_speed.py --threads-table`) frame threads ("AUTO",
"FRAME") were no faster for sparse reads (within noise) and often 10-30% slower: each seek flushes the
frames in flight and refills the pipeline; and training already runs one reader per DataLoader worker. Set
it to "AUTO" to decode a few long videos sequentially on a many-core machine.

Streams without pts (some AVI) fall back to packet dts when the stream has no B-frames; a stream with no
timestamps at all (a raw .h264 elementary stream) can be probed but not decoded by time: remux it first.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = [
    "DECODER_THREAD_TYPE",
    "DecodeStats",
    "PacketScan",
    "VideoError",
    "VideoHeader",
    "VideoInfo",
    "clear_index_cache",
    "decode_frames",
    "iter_frames",
    "probe_video",
    "read_header",
    "scan_packets",
    "video_frame_times",
    "write_video",
]

_EPS = 1e-6  # seconds: a frame whose pts is within this of the target counts as displayed at it
_NO_TS = np.iinfo(np.int64).min  # "no timestamp" in int64 arrays
_INDEX_CACHE_BYTES = 64 << 20  # per process; see "How `decode_frames` stays sparse"
DECODER_THREAD_TYPE = "NONE"  # see the module docstring ("AUTO", "FRAME", "SLICE", "NONE")


class VideoError(RuntimeError):
    """A video could not be read as asked. The message names the file, and the target time when relevant."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    duration_s: float
    fps: float  # average frame rate
    num_frames: int
    num_frames_exact: bool  # False: estimated as round(duration_s * fps)
    width: int
    height: int


@dataclass
class DecodeStats:
    """Debug counters filled by `decode_frames` / `iter_frames` (pass one in to inspect sparsity)."""

    frames_decoded: int = 0  # frames output by the decoder
    frames_converted: int = 0  # frames converted to RGB (the targets)
    seeks: int = 0
    packets_demuxed: int = 0
    packets_skipped: int = 0  # demuxed after a seek but dropped undecoded (before the wanted keyframe)
    index_scans: int = 0  # demux-only index passes (0 when the index came from the LRU cache)
    decoded_pts: list[int] = field(default_factory=list)  # pts of every decoded frame, in output order
    record_pts: bool = True  # False: keep `decoded_pts` empty (long sequential reads)

    @property
    def duplicate_frames(self) -> int:
        """Frames decoded more than once (0 by construction: the pass never goes backwards)."""
        return len(self.decoded_pts) - len(set(self.decoded_pts))


# --------------------------------------------------------------------------------------------------------
# opening and indexing


@contextmanager
def _opened(path: Path):
    """Open `path` and yield (container, first video stream); every failure is a VideoError."""
    if not path.exists():
        raise VideoError(f"{path}: video file not found")
    if not path.is_file():
        raise VideoError(f"{path}: not a regular file")
    try:
        container = av.open(str(path), mode="r", metadata_errors="replace")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"{path}: cannot be opened as a video ({exc})") from exc
    try:
        if not container.streams.video:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise VideoError(f"{path}: no video stream (streams: {kinds})")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise VideoError(f"{path}: no decoder for the video stream's codec")
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise VideoError(f"{path}: the video stream has no frame size (corrupt header?)")
        for other in container.streams:
            if other.index != stream.index:
                other.discard = 48  # AVDISCARD_ALL: the demuxer still reads them but we never see them
        yield container, stream
    finally:
        container.close()


def _rate(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return None


@dataclass(frozen=True)
class _Index:
    time_base: Fraction
    start_pts: int  # pts of t = 0
    pkt_pts: np.ndarray  # (P,) int64 pts per packet in decode order (dts when the stream has no pts)
    pkt_dts: np.ndarray  # (P,) int64, _NO_TS where absent
    dts_increasing: bool
    start_points: np.ndarray  # decode-order packet indices decoding may start from (keyframes, and 0)
    frame_pts: np.ndarray  # (F,) sorted pts of the displayed frames
    frame_pkt: np.ndarray  # (F,) decode-order packet index of each displayed frame
    frame_start: np.ndarray  # (F,) packet index (a start point) to decode from to obtain the frame
    frame_times: np.ndarray  # (F,) seconds from t = 0
    last_frame_duration_s: float
    duration_s: float
    num_packets: int
    fps: float | None
    no_timestamps: str | None  # why the stream cannot be decoded by time, None when it can

    @property
    def nbytes(self) -> int:
        arrays = (self.pkt_pts, self.pkt_dts, self.start_points, self.frame_pts, self.frame_pkt,
                  self.frame_start, self.frame_times)  # fmt: skip
        return sum(a.nbytes for a in arrays)

    def locate(self, packet) -> int | None:
        """Decode-order index of a demuxed packet, or None when the index does not know it."""
        if packet.dts is not None and self.dts_increasing:
            i = int(np.searchsorted(self.pkt_dts, packet.dts))
            return i if i < self.num_packets and self.pkt_dts[i] == packet.dts else None
        if packet.pts is not None:
            i = int(np.searchsorted(self.frame_pts, packet.pts))
            return (
                int(self.frame_pkt[i])
                if i < len(self.frame_pts) and self.frame_pts[i] == packet.pts
                else None
            )
        return None


@dataclass
class _Packets:
    """The packets of one video stream, in decode order, as a demux-only pass reads them."""

    pts: np.ndarray  # (P,) int64, _NO_TS where absent
    dts: np.ndarray  # (P,) int64, _NO_TS where absent
    keys: np.ndarray  # (P,) bool keyframe
    durations: np.ndarray  # (P,) int64, 0 where unknown
    keep: np.ndarray  # (P,) bool: not marked discard
    time_base: Fraction
    stream_start: int | None
    has_b_frames: bool
    fps: float | None


def _scan(path: Path) -> _Index:
    """One demux-only pass over the video packets (nothing is decoded) -> the frame index."""
    packets = _read_packets(path)
    no_ts = _fill_missing_pts(packets)
    if no_ts is not None:
        return _index_without_timestamps(packets, no_ts)
    frame_pkt = np.nonzero(packets.keep)[0]
    frame_pkt = frame_pkt[np.argsort(packets.pts[frame_pkt], kind="stable")]  # display order
    frame_pts = packets.pts[frame_pkt]
    if len(frame_pts) == 0:
        raise VideoError(f"{path}: every packet of the video stream is marked discard")
    start_points, frame_start = _decode_starts(packets, frame_pkt, frame_pts)
    start_pts = int(packets.stream_start) if packets.stream_start is not None else int(frame_pts[0])
    frame_times = (frame_pts - start_pts).astype(np.float64) * float(packets.time_base)
    last_duration_s = _last_frame_duration(packets, frame_pkt, frame_times)
    dts_known = packets.dts != _NO_TS
    return _Index(
        time_base=packets.time_base,
        start_pts=start_pts,
        pkt_pts=packets.pts,
        pkt_dts=packets.dts,
        dts_increasing=bool(dts_known.all() and (np.diff(packets.dts) > 0).all()),
        start_points=start_points,
        frame_pts=frame_pts,
        frame_pkt=frame_pkt,
        frame_start=frame_start,
        frame_times=frame_times,
        last_frame_duration_s=last_duration_s,
        duration_s=float(frame_times[-1] + last_duration_s),
        num_packets=len(packets.pts),
        fps=packets.fps,
        no_timestamps=None,
    )


def _read_packets(path: Path) -> _Packets:
    pts_l: list[int] = []
    dts_l: list[int] = []
    key_l: list[bool] = []
    dur_l: list[int] = []
    keep_l: list[bool] = []
    corrupt_l: list[bool] = []
    with _opened(path) as (container, stream):
        time_base = stream.time_base
        if time_base is None or time_base <= 0:
            raise VideoError(f"{path}: the video stream has no time base")
        try:
            for packet in container.demux(stream):
                if packet.size == 0 and packet.pts is None and packet.dts is None:
                    continue  # end-of-stream flush packet
                pts_l.append(_NO_TS if packet.pts is None else packet.pts)
                dts_l.append(_NO_TS if packet.dts is None else packet.dts)
                key_l.append(packet.is_keyframe)
                dur_l.append(packet.duration or 0)
                keep_l.append(not packet.is_discard)
                corrupt_l.append(packet.is_corrupt)
        except av.FFmpegError as exc:
            raise VideoError(f"{path}: corrupt data while reading packet {len(pts_l)} ({exc})") from exc
        stream_start, has_b_frames, fps = (
            stream.start_time,
            bool(stream.codec_context.has_b_frames),
            _rate(stream),
        )
    while (
        corrupt_l and corrupt_l[-1]
    ):  # a file cut short ends in a partial packet: the frames before it decode
        for column in (pts_l, dts_l, key_l, dur_l, keep_l, corrupt_l):
            column.pop()
    if not pts_l:
        raise VideoError(f"{path}: the video stream holds no packets")
    return _Packets(
        np.asarray(pts_l, dtype=np.int64), np.asarray(dts_l, dtype=np.int64), np.asarray(key_l, dtype=bool),
        np.asarray(dur_l, dtype=np.int64), np.asarray(keep_l, dtype=bool), time_base, stream_start,
        has_b_frames, fps,
    )  # fmt: skip


def _fill_missing_pts(packets: _Packets) -> str | None:
    """Packets without pts take their dts when decode order is display order; otherwise the reason the
    video has no usable timestamps (None when every frame has one)."""
    missing = packets.pts == _NO_TS
    if not missing.any():
        return None
    has_dts = packets.dts != _NO_TS
    if (missing & ~has_dts).any():
        return (
            f"{int((missing & ~has_dts).sum())} of {len(packets.pts)} packets carry neither pts nor dts "
            "(raw elementary stream?); remux it into a container with timestamps, e.g. "
            "`ffmpeg -fflags +genpts -r FPS -i IN -c copy OUT.mp4`"
        )
    if packets.has_b_frames:
        return "packets lack presentation timestamps and the codec reorders frames (B-frames)"
    packets.pts = np.where(missing, packets.dts, packets.pts)  # no reordering: dts is the display time
    return None


def _index_without_timestamps(packets: _Packets, reason: str) -> _Index:
    """An index that can report a duration but refuses to seek (`no_timestamps` says why)."""
    total = int(packets.durations.sum())
    if total > 0:
        duration_s = total * float(packets.time_base)
    elif packets.fps:
        duration_s = len(packets.pts) / packets.fps
    else:
        duration_s = float("nan")
    empty = np.zeros(0, dtype=np.int64)
    return _Index(
        packets.time_base, 0, packets.pts, packets.dts, False, empty, empty, empty, empty, np.zeros(0), 0.0,
        duration_s, len(packets.pts), packets.fps, reason,
    )  # fmt: skip


def _decode_starts(packets: _Packets, frame_pkt: np.ndarray, frame_pts: np.ndarray):
    """(keyframe packets decoding may start at, the start packet of each frame)."""
    start_points = np.nonzero(packets.keys)[0]
    if len(start_points) == 0 or start_points[0] != 0:
        start_points = np.concatenate([[0], start_points])  # decoding from the file start always works
    j = np.searchsorted(start_points, frame_pkt, side="right") - 1
    # Open GOPs: a leading picture shown before its keyframe cannot be decoded from that keyframe.
    for f in np.nonzero(packets.pts[start_points[j]] > frame_pts)[0]:
        while j[f] > 0 and packets.pts[start_points[j[f]]] > frame_pts[f]:
            j[f] -= 1
    return start_points, start_points[j]


def _last_frame_duration(packets: _Packets, frame_pkt: np.ndarray, frame_times: np.ndarray) -> float:
    last = int(packets.durations[frame_pkt[-1]])
    if last > 0:
        return last * float(packets.time_base)
    if len(frame_times) > 1:
        return float(frame_times[-1] - frame_times[-2])
    return 1.0 / packets.fps if packets.fps else 0.0


_index_cache: OrderedDict[tuple[str, int, int], _Index] = OrderedDict()
_index_lock = threading.Lock()


def _load_index(path: Path, stats: DecodeStats | None = None) -> _Index:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise VideoError(f"{path}: video file not found") from None
    except OSError as exc:
        raise VideoError(f"{path}: cannot stat the video file ({exc})") from exc
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    with _index_lock:
        index = _index_cache.get(key)
        if index is not None:
            _index_cache.move_to_end(key)
            return index
    index = _scan(path)
    if stats is not None:
        stats.index_scans += 1
    with _index_lock:
        _index_cache[key] = index
        held = sum(i.nbytes for i in _index_cache.values())
        while held > _INDEX_CACHE_BYTES and len(_index_cache) > 1:
            held -= _index_cache.popitem(last=False)[1].nbytes
    return index


def clear_index_cache() -> None:
    """Forget every cached per-file packet index (benchmarks use it to time cold reads)."""
    with _index_lock:
        _index_cache.clear()


def _require_timestamps(index: _Index, path: Path) -> None:
    if index.no_timestamps is not None:
        raise VideoError(f"{path}: cannot decode frames by time: {index.no_timestamps}")


# --------------------------------------------------------------------------------------------------------
# probing


@dataclass(frozen=True)
class VideoHeader:
    """What the container header says, before any packet is read (None where it says nothing)."""

    duration_s: float | None
    fps: float | None
    num_frames: int | None  # the stream's frame count (mp4: its sample table)
    width: int
    height: int


def read_header(path: str | Path) -> VideoHeader:
    """The header fields of the first video stream: stream duration (else the container's), rate, frame count."""
    path = Path(path)
    with _opened(path) as (container, stream):
        duration_s = None
        if stream.duration is not None and stream.duration > 0 and stream.time_base:
            duration_s = float(stream.duration * stream.time_base)
        elif container.duration is not None and container.duration > 0:
            duration_s = container.duration / av.time_base
        num_frames = stream.frames if stream.frames and stream.frames > 0 else None
        cc = stream.codec_context
        return VideoHeader(duration_s, _rate(stream), num_frames, int(cc.width), int(cc.height))


def probe_video(path: str | Path) -> VideoInfo:
    """Duration, average fps, frame count and size of a video.

    Header fields first (stream duration and frame count, then the container duration); when the duration
    or the rate is missing, a demux-only pass over the packets (no decoding) measures them, and the frame
    count it gives is exact. Otherwise a missing frame count is estimated (`num_frames_exact=False`).
    """
    path = Path(path)
    header = read_header(path)
    duration_s, fps, num_frames = header.duration_s, header.fps, header.num_frames
    exact = num_frames is not None
    if duration_s is None or fps is None:
        index = _load_index(path)
        duration_s = index.duration_s
        num_frames = len(index.frame_pts) if index.no_timestamps is None else index.num_packets
        exact = True
        if fps is None and duration_s > 0:
            fps = num_frames / duration_s
    if fps is None or not np.isfinite(duration_s):
        raise VideoError(f"{path}: neither the header nor the packets give a frame rate / duration")
    if num_frames is None:
        num_frames = int(round(duration_s * fps))
    return VideoInfo(path, float(duration_s), float(fps), int(num_frames), exact, header.width, header.height)


@dataclass(frozen=True)
class PacketScan:
    """One demux-only pass over every packet of the video stream (`scan_packets`)."""

    num_packets: int  # packets read before the end or the first unreadable one
    duration_s: float  # end of the last packet read (pts + duration), seconds from the first
    problem: str | None  # the first packet that could not be read or whose framing is broken, None if none


# Codecs whose packets can be checked without decoding: the filter parses each packet's NAL-unit framing
# (the length prefixes of mp4's AVCC / HVCC layout), which garbage bytes mid-file break.
_FRAMING_FILTERS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}


def scan_packets(path: str | Path) -> PacketScan:
    """Read every packet of the first video stream without decoding (plus a NAL-framing check for H.264 /
    HEVC): what a truncated file or garbage mid-file leaves, which the header cannot show."""
    from av.bitstream import BitStreamFilterContext

    path = Path(path)
    count, first, end, problem = 0, None, None, None
    with _opened(path) as (container, stream):
        name = stream.codec_context.name
        framing = BitStreamFilterContext(_FRAMING_FILTERS[name], stream) if name in _FRAMING_FILTERS else None
        packets = container.demux(stream)
        while problem is None:
            try:
                packet = next(packets, None)
            except av.FFmpegError as exc:
                problem = f"packet {count} cannot be read ({exc})"
                break
            if packet is None or (packet.size == 0 and packet.pts is None and packet.dts is None):
                break
            if packet.is_corrupt:
                problem = f"packet {count} is flagged corrupt by the demuxer (cut-off or damaged data)"
                break
            stamp = packet.pts if packet.pts is not None else packet.dts
            length = packet.duration or 0
            if framing is not None:  # the filter takes the packet over: its fields are read before
                try:
                    framing.filter(packet)
                except av.FFmpegError as exc:
                    problem = f"packet {count} is malformed ({exc}): corrupt or cut-off data"
                    break
            count += 1
            if stamp is not None:
                first = stamp if first is None else min(first, stamp)
                end = stamp + length if end is None else max(end, stamp + length)
        time_base = float(stream.time_base) if stream.time_base else 0.0
    duration_s = (end - first) * time_base if first is not None else 0.0
    return PacketScan(count, duration_s, problem)


def video_frame_times(path: str | Path) -> np.ndarray:
    """Presentation times (seconds from t = 0, ascending) of every frame of the video, from the index."""
    path = Path(path)
    index = _load_index(path)
    _require_timestamps(index, path)
    return index.frame_times.copy()


# --------------------------------------------------------------------------------------------------------
# decoding


def _check_size(size, path: Path) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise VideoError(f"{path}: size must be (width, height), got {size!r}") from None
    if width <= 0 or height <= 0:
        raise VideoError(f"{path}: size must be positive, got {size!r}")
    return width, height


class _Reader:
    """Forward-only sparse reader over one opened file: `frame_at(f)` for ascending frame numbers f."""

    def __init__(self, container, stream, index: _Index, path: Path, stats: DecodeStats):
        self.container, self.stream, self.index, self.path, self.stats = container, stream, index, path, stats
        stream.thread_type = DECODER_THREAD_TYPE
        self.packets = container.demux(stream)
        self.next_pkt = 0  # decode-order index of the next packet the demuxer returns
        self.pending: deque = deque()  # decoded frames (pts, frame) not yet consumed, in output order
        self.eof = False

    def _where(self, frame_number: int) -> str:
        t = float(self.index.frame_times[frame_number])
        return f"{self.path}: frame at {t:.6f} s (pts {int(self.index.frame_pts[frame_number])})"

    def _decode(self, packet) -> None:
        """Decode `packet`; None flushes the decoder (the frames it still holds)."""
        try:
            frames = packet.decode() if packet is not None else self.stream.decode(None)
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: corrupt data in packet {self.next_pkt} ({exc})") from exc
        for frame in frames:
            pts = frame.pts if frame.pts is not None else frame.dts
            if pts is None:
                raise VideoError(f"{self.path}: the decoder output a frame without any timestamp")
            if frame.is_corrupt:
                raise VideoError(f"{self.path}: the decoder flagged the frame at pts {pts} as corrupt")
            self.stats.frames_decoded += 1
            if self.stats.record_pts:
                self.stats.decoded_pts.append(int(pts))
            self.pending.append((int(pts), frame))

    def _feed(self) -> bool:
        """Demux and decode one packet; False once the stream is exhausted (decoder flushed)."""
        if self.eof:
            return False
        try:
            packet = next(self.packets, None)
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: corrupt data after packet {self.next_pkt} ({exc})") from exc
        if packet is None:
            self.eof = True
            return False
        self.stats.packets_demuxed += 1
        if packet.size == 0 and packet.pts is None and packet.dts is None:
            self._decode(packet)  # flush: the decoder returns the frames it still holds
            self.eof = True
            return True
        if self.next_pkt >= self.index.num_packets:
            if packet.is_corrupt:  # the partial last packet of a file cut short, left out of the index
                self._decode(None)
                self.eof = True
                return True
            raise VideoError(f"{self.path}: more packets than indexed (file changed while reading?)")
        expected = self.index.pkt_pts[self.next_pkt]
        got = packet.pts if packet.pts is not None else packet.dts
        if got is not None and expected != _NO_TS and got != expected:
            raise VideoError(
                f"{self.path}: packet {self.next_pkt} has pts {got} but the index says {int(expected)} "
                "(file changed while reading?)"
            )
        self._decode(packet)
        self.next_pkt += 1
        return True

    def _seek(self, start: int) -> None:
        """Position the demuxer on packet `start` (a start point), dropping undecoded what comes before."""
        index = self.index
        candidates = [start] + [int(s) for s in index.start_points[index.start_points < start][::-1][:3]]
        if candidates[-1] != 0:
            candidates.append(0)
        for target in candidates:
            ts = int(index.pkt_pts[target])  # demuxers seek by pts (mov's index is by dts, its seek is not)
            try:
                self.container.seek(ts, stream=self.stream, backward=True, any_frame=False)
            except av.FFmpegError as exc:
                raise VideoError(f"{self.path}: seek to pts {ts} failed ({exc})") from exc
            self.stats.seeks += 1
            self.pending.clear()
            self.packets = self.container.demux(self.stream)
            self.eof = False
            unknown = 0  # packets the index cannot place (e.g. a partial MPEG-TS unit right after the seek)
            while True:
                try:
                    packet = next(self.packets, None)
                except av.FFmpegError as exc:
                    raise VideoError(f"{self.path}: corrupt data after seeking to pts {ts} ({exc})") from exc
                if packet is None or (packet.size == 0 and packet.pts is None and packet.dts is None):
                    break
                self.stats.packets_demuxed += 1
                position = index.locate(packet)
                if position == start:
                    self.next_pkt = start
                    self._decode(packet)
                    self.next_pkt = start + 1
                    return
                if position is not None and position > start:
                    break  # overshoot: try an earlier start point
                if position is None:
                    unknown += 1
                    if unknown > 64:
                        break  # lost: try an earlier start point
                self.stats.packets_skipped += 1
        raise VideoError(f"{self.path}: could not seek to the keyframe at packet {start} (pts {ts})")

    def frame_at(self, frame_number: int):
        index = self.index
        target = int(index.frame_pts[frame_number])
        start = int(index.frame_start[frame_number])
        if start > self.next_pkt:
            self._seek(start)
        while True:
            while not self.pending:
                if not self._feed():
                    raise VideoError(
                        f"{self._where(frame_number)}: the decoder never produced it (corrupt file?)"
                    )
            pts, frame = self.pending.popleft()
            if pts == target:
                return frame
            if pts > target:
                raise VideoError(
                    f"{self._where(frame_number)}: the decoder skipped it (next frame has pts {pts}; corrupt file?)"
                )


def _to_rgb(frame, size: tuple[int, int] | None, stats: DecodeStats) -> np.ndarray:
    """RGB uint8. `threads=1`: by default swscale starts its slice threads for every frame converted (~1 ms
    at 64x64, a fifth of a small clip's read, and nothing gained on frames this size); the pixels are the
    same (tests/data/test_video.py). Loader workers and decoder threads already use the cores."""
    stats.frames_converted += 1
    if size is None:
        return frame.to_ndarray(format="rgb24", threads=1)
    return frame.to_ndarray(width=size[0], height=size[1], format="rgb24", threads=1)


def _frame_numbers(index: _Index, times: np.ndarray, path: Path) -> np.ndarray:
    """Native frame number displayed at each time (last frame with time <= t + eps); past the end -> error."""
    if not np.isfinite(times).all():
        raise VideoError(
            f"{path}: target times must be finite, got {times[~np.isfinite(times)][:5].tolist()}"
        )
    frame_times = index.frame_times
    late = times > frame_times[-1] + index.last_frame_duration_s + _EPS
    if late.any():
        t = float(times[late].max())
        raise VideoError(
            f"{path}: target time {t:.6f} s is past the end of the video (duration {index.duration_s:.6f} s, "
            f"last frame at {float(frame_times[-1]):.6f} s)"
        )
    numbers = np.searchsorted(frame_times, times + _EPS, side="right") - 1
    return np.maximum(numbers, 0)


def decode_frames(
    path: str | Path,
    times_s: Sequence[float] | np.ndarray,
    *,
    size: tuple[int, int] | None = None,
    stats: DecodeStats | None = None,
) -> np.ndarray:
    """Decode the frames displayed at `times_s` (seconds), returned in the order of `times_s`.

    Returns (T, H, W, 3) uint8 RGB. `times_s` may be unsorted and may repeat. `size=(width, height)` resizes
    in the decoder's scaler (squashing, no crop). One forward pass over the file; see the module docstring.
    """
    path = Path(path)
    stats = stats if stats is not None else DecodeStats(record_pts=False)
    size = _check_size(size, path)
    times = np.asarray(times_s, dtype=np.float64)
    if times.ndim != 1:
        raise VideoError(f"{path}: times_s must be one-dimensional, got shape {times.shape}")
    index = _load_index(path, stats)
    _require_timestamps(index, path)
    numbers = _frame_numbers(index, times, path)
    wanted, inverse = np.unique(numbers, return_inverse=True)
    out = None
    if size is not None:
        out = np.empty((len(times), size[1], size[0], 3), dtype=np.uint8)
    with _opened(path) as (container, stream):
        if out is None:
            out = np.empty((len(times), stream.codec_context.height, stream.codec_context.width, 3), np.uint8)
        reader = _Reader(container, stream, index, path, stats)
        for k, frame_number in enumerate(wanted):
            image = _to_rgb(reader.frame_at(int(frame_number)), size, stats)
            if image.shape != out.shape[1:]:
                raise VideoError(
                    f"{reader._where(int(frame_number))}: frame size {image.shape[1]}x{image.shape[0]} differs "
                    f"from the stream's {out.shape[2]}x{out.shape[1]}"
                )
            out[inverse == k] = image
    return out


def iter_frames(
    path: str | Path,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    size: tuple[int, int] | None = None,
    every: int = 1,
    stats: DecodeStats | None = None,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Sequentially decode the frames shown in [start_s, end_s): yields (native index, time_s, RGB array).

    Seeks once to the keyframe before `start_s`; `every=k` yields every k-th native frame of the range
    (starting with its first), the others are decoded but not converted. `end_s=None` runs to the end.
    """
    path = Path(path)
    stats = stats if stats is not None else DecodeStats(record_pts=False)
    size = _check_size(size, path)
    if every < 1:
        raise VideoError(f"{path}: every must be >= 1, got {every}")
    index = _load_index(path, stats)
    _require_timestamps(index, path)
    if not np.isfinite(start_s) or start_s > index.duration_s + _EPS:
        raise VideoError(
            f"{path}: start time {start_s} s is past the end of the video ({index.duration_s:.6f} s)"
        )
    first = int(np.searchsorted(index.frame_times, start_s - _EPS, side="left"))
    stop = len(index.frame_times) if end_s is None else int(np.searchsorted(index.frame_times, end_s - _EPS))
    return _iter_frames(path, index, range(first, stop, every), size, stats)


def _iter_frames(path, index, numbers, size, stats) -> Iterator[tuple[int, float, np.ndarray]]:
    if len(numbers) == 0:
        return
    with _opened(path) as (container, stream):
        reader = _Reader(container, stream, index, path, stats)
        for frame_number in numbers:
            frame = reader.frame_at(frame_number)
            yield frame_number, float(index.frame_times[frame_number]), _to_rgb(frame, size, stats)


# --------------------------------------------------------------------------------------------------------
# writing


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float = 25.0,
    *,
    codec: str = "libx264",
    crf: int = 18,
    gop_size: int | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Encode RGB uint8 frames of shape (H, W, 3) into an mp4 with PyAV.

    `gop_size=None` keeps the encoder's default keyframe interval (x264: 250), which is what real
    surveillance encodes look like. Encoding runs single-threaded so a seed gives byte-identical files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"write_video({path}): no frames given")
    height, width = first.shape[:2]
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        stream.options = {"crf": str(crf), **(options or {})}
        if gop_size is not None:
            stream.codec_context.gop_size = gop_size
        for image in _chain(first, frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image, dtype=np.uint8), format="rgb24")
            # Converted here, not inside encode: the encoder's own rgb24 -> yuv420p conversion gave different
            # bytes from run to run (4 results in 12 encodes of one synthetic video); this one is stable.
            frame = frame.reformat(format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _chain(first, rest):
    yield first
    yield from rest
