"""`FGCLIPConfig`: an HF `CLIPConfig` plus the FG-CLIP heads, temporal module and temperatures.

It is saved with every checkpoint (`config.json`), so a checkpoint always says how its temporal module and
temperatures were configured. Defaults give a ViT-B/32-size CLIP. The region memory bank is a training
device, not part of the architecture: its options are the run config's `bank` section (checkpoints written
before that kept `memory_bank_*` fields here; they are read and ignored).
"""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig

from fgclip.model.long_text import KEEP_POSITIONS, long_table_length

LN_100 = math.log(100.0)  # 4.6052: CLIP's temperature ceiling, and FG-CLIP's initial value


@strict
class FGCLIPConfig(CLIPConfig):
    r"""
    logit_scale_init_value: initial value of the three log-temperatures (ln 100 = 4.6052), used when a
        checkpoint does not carry them.
    logit_scale_max: ceiling of the log-temperatures: the forward exponentiates min(log-scale, max), and
        the weights (fp32 masters under DeepSpeed) are clamped to it after every optimizer step.
    temporal_num_layers / temporal_num_heads / max_frames: the masked transformer over frame embeddings and
        the size of its learned temporal position table.
    region_pooling: how a region's per-frame RoI features are pooled over the frames where it is visible
        ("mean" or "max").
    long_text_max_positions / long_text_keep_positions: FG-CLIP's long-caption position table (global
        captions): the first `keep` positions are copied, later ones interpolated 4x, so its length is
        4 * max_position_embeddings - 3 * keep (248 for CLIP's 77 and FG-CLIP's 20).
    region_stop_gradient: the region and hard-negative terms train only their own heads (`roi_projection`,
        `text_projection`) and temperatures: their gradient stops at the vision and text towers, which then
        learn from the clip-level terms alone (benchmarks/ablation.py: the region terms' gradient through the
        towers is what costs zero-shot frame AUC).
    initializer_range: std of fgclip's own new layers (the temporal transformer), times `initializer_factor`,
        as CLIP's sub-configs use it. `CLIPConfig` has no top-level one, and HF's generic init then draws
        unknown `nn.Linear` layers with std = `initializer_factor` (1.0).
    """

    model_type = "fgclip"

    logit_scale_init_value: float | int | None = LN_100
    logit_scale_max: float = LN_100
    temporal_num_layers: int = 1
    temporal_num_heads: int = 8
    max_frames: int = 64
    region_pooling: str = "mean"
    long_text_max_positions: int = 248
    long_text_keep_positions: int = KEEP_POSITIONS
    region_stop_gradient: bool = False
    initializer_range: float = 0.02

    def validate_architecture(self):
        if self.region_pooling not in ("mean", "max"):
            raise ValueError(f"region_pooling must be 'mean' or 'max', got {self.region_pooling!r}")
        if self.projection_dim % self.temporal_num_heads:
            raise ValueError(
                f"projection_dim ({self.projection_dim}) must be divisible by temporal_num_heads "
                f"({self.temporal_num_heads})"
            )
        short = self.text_config.max_position_embeddings
        if not 1 <= self.long_text_keep_positions <= short - 2:
            raise ValueError(
                f"long_text_keep_positions must be in [1, max_position_embeddings - 2 = {short - 2}], "
                f"got {self.long_text_keep_positions}"
            )
        expected = long_table_length(short, self.long_text_keep_positions)
        if self.long_text_max_positions != expected:
            raise ValueError(
                f"long_text_max_positions ({self.long_text_max_positions}) must be 4 * max_position_embeddings "
                f"- 3 * long_text_keep_positions = 4 * {short} - 3 * {self.long_text_keep_positions} = {expected} "
                "(FG-CLIP's long-caption table)"
            )


def tiny_config(
    *,
    image_size: int = 64,
    patch_size: int = 8,
    vision_width: int = 128,
    vision_layers: int = 4,
    text_width: int = 128,
    text_layers: int = 3,
    heads: int = 4,
    projection_dim: int = 128,
    vocab_size: int = 512,
    max_positions: int = 77,
    bos_token_id: int = 0,
    eos_token_id: int = 1,
    pad_token_id: int = 2,
    **fgclip_options,
) -> FGCLIPConfig:
    """A small CLIP for the synthetic benchmark and tests (trains from scratch on a CPU in minutes)."""
    keep = fgclip_options.setdefault("long_text_keep_positions", KEEP_POSITIONS)
    fgclip_options.setdefault("long_text_max_positions", long_table_length(max_positions, keep))
    return FGCLIPConfig(
        vision_config=dict(
            image_size=image_size,
            patch_size=patch_size,
            hidden_size=vision_width,
            intermediate_size=4 * vision_width,
            num_hidden_layers=vision_layers,
            num_attention_heads=heads,
            projection_dim=projection_dim,
        ),
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=text_width,
            intermediate_size=4 * text_width,
            num_hidden_layers=text_layers,
            num_attention_heads=heads,
            max_position_embeddings=max_positions,
            projection_dim=projection_dim,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        ),
        projection_dim=projection_dim,
        temporal_num_heads=fgclip_options.pop("temporal_num_heads", heads),
        **fgclip_options,
    )
