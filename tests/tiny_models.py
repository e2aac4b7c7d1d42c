"""Tiny models built in the test (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

from fgclip.model.configuration import tiny_config
from fgclip.model.modeling import FGCLIPModel


def tiny_test_config(layers: int = 1):
    """FGCLIPConfig of the test models: vocab 40 (EOS id 1), width 32, 32 px images, projection 16."""
    return tiny_config(
        vocab_size=40, image_size=32, patch_size=8, vision_width=32, text_width=32,
        vision_layers=layers, text_layers=layers, heads=2, projection_dim=16,
    )  # fmt: skip


def tiny_fgclip(seed: int = 0, layers: int = 1) -> FGCLIPModel:
    """A randomly initialised FGCLIPModel of `tiny_test_config`, the same for the same seed."""
    torch.manual_seed(seed)
    return FGCLIPModel(tiny_test_config(layers))


def save_tiny_hf_clip(path: str | Path, layers: int = 1) -> CLIPModel:
    """A randomly initialised plain HF CLIP (vocab 40, width 32, 32 px images) saved to `path`; returned in eval mode."""
    config = tiny_test_config(layers)
    clip = CLIPModel(
        CLIPConfig(
            text_config=config.text_config.to_dict(),
            vision_config=config.vision_config.to_dict(),
            projection_dim=16,
        )
    ).eval()
    clip.save_pretrained(path)
    return clip
