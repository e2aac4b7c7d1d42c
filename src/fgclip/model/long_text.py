"""FG-CLIP's long-caption position table: CLIP's 77 positions stretched to 248 (global captions only).

FG-CLIP (after Long-CLIP) keeps the first `keep` positions, which CLIP trained well, and interpolates each
later gap 4x, so a caption of up to 4 * 77 - 3 * 20 = 248 tokens has a position for every token. It keeps
two copies of that table, `position_embedding_ori` and `position_embedding_res`, and a long caption's
token at position p takes row p of `ori` when p < keep, else row p of `res`. Region and hard-negative
captions keep the 77-position table.
"""

from __future__ import annotations

import torch

STEPS = 4  # FG-CLIP's interpolation factor
KEEP_POSITIONS = 20  # FG-CLIP's (and Long-CLIP's) count of CLIP positions copied unchanged


def long_table_length(short_length: int, keep: int) -> int:
    """Rows of the long table built from a `short_length` table: 4 * 77 - 3 * 20 = 248 for CLIP."""
    return STEPS * short_length - (STEPS - 1) * keep


def interpolate_positions(short: torch.Tensor, keep: int) -> torch.Tensor:
    """(n, C) position table -> (4n - 3 keep, C), exactly as FG-CLIP's `resize_postion_embeding`.

    Rows [0, keep) are copied; for each gap i between short rows keep+i and keep+i+1, four rows
    (4-j)/4 * a + j/4 * b (j = 0..3); the last four rows extrapolate past the end with the last
    step: short[-1] + j/4 * (short[-1] - short[-2]). The arithmetic is written in FG-CLIP's order
    (`3*a/4 + 1*b/4`), so the result is bitwise identical to its loop.
    """
    length, width = short.shape
    if not 1 <= keep < length - 1:
        raise ValueError(
            f"long_text_keep_positions must be in [1, {length - 2}] for a {length}-position table, got {keep}"
        )
    j = torch.arange(STEPS, dtype=short.dtype, device=short.device).view(1, STEPS, 1)  # (1, 4, 1)
    start, end = short[keep:-1].unsqueeze(1), short[keep + 1 :].unsqueeze(1)  # (n-1-keep, 1, C)
    gaps = ((STEPS - j) * start / STEPS + j * end / STEPS).reshape(-1, width)  # (4 (n-1-keep), C)
    last, step = short[-1], short[-1] - short[-2]  # (C,)
    tail = last + j.view(STEPS, 1) * step / STEPS  # (4, C)
    return torch.cat([short[:keep], gaps, tail])  # (4n - 3 keep, C)


def long_position_embeds(ori: torch.Tensor, res: torch.Tensor, keep: int, length: int) -> torch.Tensor:
    """Position embeddings (L, C) of a long caption of `length` tokens: `ori` below `keep`, `res` from it."""
    if length > ori.shape[0]:
        raise ValueError(
            f"caption of {length} tokens is longer than the long position table ({ori.shape[0]} positions); "
            "truncate global captions to long_text_max_positions (data.global_caption_max_length)"
        )
    position = torch.arange(length, device=ori.device).unsqueeze(-1)  # (L, 1)
    return torch.where(position < keep, ori[:length], res[:length])  # (L, C)
