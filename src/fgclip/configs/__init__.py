"""The configs shipped inside the package (the repo-root `configs/` holds the templates for real data)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_CONFIG = "demo_finetune.yaml"  # the demo: fine-tune the pretrained stand-in
SCRATCH_CONFIG = "demo.yaml"  # a tiny CLIP from scratch (tests and benchmarks build on it; `--from-scratch`)


def demo_config_path() -> Path:
    """The from-scratch tiny config (what tests and benchmarks train)."""
    return packaged_config(SCRATCH_CONFIG)


def finetune_config_path() -> Path:
    """The demo's config: the shipped stand-in fine-tuned at a fine-tuning learning rate."""
    return packaged_config(DEMO_CONFIG)


def packaged_config(name: str) -> Path:
    return Path(str(resources.files("fgclip.configs") / name))
