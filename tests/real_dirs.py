"""Where the shared real files are: `shared/data/real` beside the checkout or one of its parents.

Tests that need them skip, with the reason, when they are absent (DESIGN: nothing is downloaded).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE_FILES = ("config.json", "vocab.json", "merges.txt", "tokenizer_config.json")


def real_dir() -> Path | None:
    override = os.environ.get("FGCLIP_REAL_DATA")
    candidates = [Path(override)] if override else []
    candidates += [parent / "shared" / "data" / "real" for parent in REPO_ROOT.parents]
    return next((c for c in candidates if c.is_dir()), None)


def fgclip_base_dir() -> Path:
    """The released FG-CLIP base directory without weights (config.json + the real CLIP BPE tokenizer)."""
    real = real_dir()
    base = real / "fgclip_base" if real is not None else None
    if base is None or not all((base / name).is_file() for name in BASE_FILES):
        pytest.skip(
            "shared/data/real/fgclip_base (released config + CLIP BPE tokenizer) not found beside the checkout "
            "or its parents; set FGCLIP_REAL_DATA to the shared data/real folder"
        )
    return base


def ucf_clip_list() -> Path:
    """`fgclip_vad/ucf_fgclip_with_v3.json`, the real clip list (2,247 entries)."""
    real = real_dir()
    path = real / "fgclip_vad" / "ucf_fgclip_with_v3.json" if real is not None else None
    if path is None or not path.is_file():
        pytest.skip("shared/data/real/fgclip_vad/ucf_fgclip_with_v3.json not found beside the checkout")
    return path
