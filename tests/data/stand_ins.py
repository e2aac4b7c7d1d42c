"""Test helpers: stand-in videos whose frames carry their index in their pixels, and the real annotation files.

Imported by the test modules of this folder (pytest puts the folder on sys.path).
"""

from __future__ import annotations

import os
from pathlib import Path

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
