"""Test helpers: stand-in videos whose frames carry their index in their pixels, and the real annotation files.

Imported by the test modules of this folder (pytest puts the folder on sys.path).
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest

from fgclip.data.video import write_video

LEVELS = np.array([24, 88, 152, 216])  # 4 gray levels, far apart: robust to x264 at crf 18
COLS, ROWS = 4, 2  # 8 flat blocks, 2 bits each: indices up to 65535

REPO_ROOT = Path(__file__).resolve().parents[2]


def index_frame(i: int, width: int = 64, height: int = 48) -> np.ndarray:
    """A frame showing the number i as 8 large flat gray blocks (base 4, least significant first)."""
    image = np.empty((height, width, 3), np.uint8)
    bw, bh = width // COLS, height // ROWS
    for k in range(COLS * ROWS):
        r, c = divmod(k, COLS)
        image[r * bh : (r + 1) * bh, c * bw : (c + 1) * bw] = LEVELS[(i >> (2 * k)) & 3]
    return image


def read_index(image: np.ndarray) -> int:
    """Inverse of `index_frame`, from the centre half of each block (works on resized frames too)."""
    height, width = image.shape[:2]
    bw, bh = width / COLS, height / ROWS
    value = 0
    for k in range(COLS * ROWS):
        r, c = divmod(k, COLS)
        block = image[
            int(r * bh + bh / 4) : int((r + 1) * bh - bh / 4),
            int(c * bw + bw / 4) : int((c + 1) * bw - bw / 4),
        ]
        value |= int(np.abs(LEVELS - block.mean()).argmin()) << (2 * k)
    return value


def index_video(path: Path, seconds: float, fps: float = 30.0, size: int = 64) -> Path:
    """A stand-in mp4 of `seconds` whose native frame i shows i (see `index_frame`)."""
    count = int(round(seconds * fps))
    return write_video(path, (index_frame(i, size, size * 3 // 4) for i in range(count)), fps)


def real_data_dir() -> Path:
    """The shared real annotation files: `shared/data/real` beside the checkout or beside one of its parent
    folders (CI: `../shared`; an engineer's worktree sits deeper), or $FGCLIP_REAL_DATA. Skips when absent."""
    override = os.environ.get("FGCLIP_REAL_DATA")
    candidates = [Path(override)] if override else []
    candidates += [parent / "shared" / "data" / "real" for parent in REPO_ROOT.parents]
    for candidate in candidates:
        if (candidate / "fgclip_vad").is_dir():
            return candidate
    pytest.skip(
        "real annotation files not found (looked for shared/data/real beside the checkout and its parents; "
        "set FGCLIP_REAL_DATA to point at it)"
    )


def faststart_video(path: Path, seconds: float = 4.0, fps: float = 25.0, size: int = 96) -> Path:
    """A stand-in mp4 with its index (moov) before the frames, as streaming encoders write it: cut short, its
    header still promises every frame. Noisy frames (hundreds of kB) so the frame data dominates the file."""
    rng = np.random.default_rng(0)
    count = int(round(seconds * fps))
    frames = (
        np.clip(index_frame(i, size, size * 3 // 4).astype(int) + rng.integers(-40, 40, (size * 3 // 4, size, 3)),
                0, 255).astype(np.uint8)
        for i in range(count)
    )  # fmt: skip
    plain = write_video(path.with_suffix(".plain.mp4"), frames, fps, gop_size=10)
    faststart_copy(plain, path)
    plain.unlink()
    return path


def faststart_copy(source: Path, path: Path) -> Path:
    """`source` remuxed (no re-encoding) with its index (moov) before the frames."""
    with av.open(str(source)) as src, av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return path


def cut_in_half(source: Path, path: Path) -> Path:
    """The first half of `source`'s bytes (a download or copy interrupted half way)."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def garbage_mid_file(source: Path, path: Path, length: int = 3000) -> Path:
    """`source` with `length` random bytes written over its middle (same size: the header still matches)."""
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + length] = (
        np.random.default_rng(1).integers(0, 256, length, dtype=np.uint8).tobytes()
    )
    path.write_bytes(bytes(data))
    return path
