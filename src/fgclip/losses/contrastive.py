"""The alignment losses (global, region, hard negative, video label). Each takes local (this rank's) features and gathers what it needs.

Normalisation: each rank returns `sum of its per-query losses * world_size / global number of queries`.
DDP averages gradients over ranks, so the step follows the mean over every query of the global batch —
exactly what a single process would compute on the concatenated batch, whatever each rank holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fgclip.distributed import all_reduce_sum, gather_rows, get_world_size_and_rank


@dataclass(frozen=True)
class RegionNegatives:
    """Extra (detached) negatives for the region loss, e.g. from the memory bank."""

    image_embeds: torch.Tensor  # (Q, D)
    text_embeds: torch.Tensor  # (Q, D)
    caption_keys: torch.Tensor  # (Q,)

    @classmethod
    def empty(cls, like: torch.Tensor) -> RegionNegatives:
        dim = like.shape[-1]
        return cls(
            like.new_zeros(0, dim),
            like.new_zeros(0, dim),
            torch.zeros(0, dtype=torch.long, device=like.device),
        )


def info_nce(logits: torch.Tensor, positive: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """Per-query cross-entropy over keys; `ignore` (Q, K) removes false negatives (never the positive)."""
    logits = logits.float().masked_fill(ignore, float("-inf"))
    return F.cross_entropy(logits, positive, reduction="none")  # (Q,)


def global_loss(
    clip_embeds: torch.Tensor, caption_embeds: torch.Tensor, caption_keys: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Symmetric InfoNCE clip <-> global caption over the gathered batch; equal captions are not negatives."""
    all_clips, offset = gather_rows(clip_embeds, grad=True)  # (N, D)
    all_captions, _ = gather_rows(caption_embeds, grad=True)  # (N, D)
    all_keys, _ = gather_rows(caption_keys, grad=False)  # (N,)
    positive = offset + torch.arange(clip_embeds.shape[0], device=clip_embeds.device)  # (B,)
    ignore = _duplicates(caption_keys, all_keys, positive)  # (B, N)
    clip_to_text = info_nce(scale * clip_embeds @ all_captions.T, positive, ignore)
    text_to_clip = info_nce(scale * caption_embeds @ all_clips.T, positive, ignore)
    loss = _global_mean(clip_to_text + text_to_clip, all_clips.shape[0]) / 2
    return loss, {"global/masked_duplicates": ignore.sum().float()}


def region_loss(
    region_embeds: torch.Tensor,
    region_text_embeds: torch.Tensor,
    caption_keys: torch.Tensor,
    scale: torch.Tensor,
    extra: RegionNegatives | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Symmetric InfoNCE region <-> region caption over the gathered batch plus `extra` negatives.

    region->text ranks [batch texts, extra texts]; text->region ranks [batch regions, extra regions].
    Entries whose caption key equals the query's (other than the positive) are masked in both parts.
    """
    extra = extra if extra is not None else RegionNegatives.empty(region_embeds)
    all_regions, offset = gather_rows(region_embeds, grad=True)  # (M_all, D)
    all_texts, _ = gather_rows(region_text_embeds, grad=True)  # (M_all, D)
    all_keys, _ = gather_rows(caption_keys, grad=False)  # (M_all,)
    num_queries = all_regions.shape[0]
    if num_queries == 0:
        return scale * 0.0, {"region/queries": scale.new_tensor(0.0)}
    positive = offset + torch.arange(region_embeds.shape[0], device=region_embeds.device)  # (M,)
    key_pool = torch.cat([all_keys, extra.caption_keys])  # (M_all + Q,)
    ignore = _duplicates(caption_keys, key_pool, positive)  # (M, M_all + Q)
    text_pool = torch.cat([all_texts, extra.text_embeds.to(all_texts.dtype)])
    region_pool = torch.cat([all_regions, extra.image_embeds.to(all_regions.dtype)])
    region_to_text = info_nce(scale * region_embeds @ text_pool.T, positive, ignore)
    text_to_region = info_nce(scale * region_text_embeds @ region_pool.T, positive, ignore)
    loss = _global_mean(region_to_text + text_to_region, num_queries) / 2
    negatives = (key_pool.shape[0] - 1) - ignore.sum(1).float()  # (M,)
    return loss, {
        "region/queries": torch.tensor(float(num_queries)),
        "region/negatives_per_query": negatives.mean() if negatives.numel() else negatives.new_tensor(0.0),
        "region/masked_duplicates": ignore.sum().float(),
    }


def hard_negative_loss(
    region_embeds: torch.Tensor,
    region_text_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    negative_present: torch.Tensor,
    scale: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per region: softmax over its caption and its present hard negatives; the caption is the target."""
    rows = negative_present.any(1)  # (M,) regions that have at least one negative
    positives = (region_embeds * region_text_embeds).sum(-1, keepdim=True)  # (M, 1)
    negatives = torch.einsum("md,mkd->mk", region_embeds, negative_embeds)  # (M, K)
    logits = scale * torch.cat([positives, negatives], 1)[rows]  # (M', 1+K)
    ignore = torch.cat([torch.zeros_like(rows).unsqueeze(1), ~negative_present], 1)[rows]
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    per_region = info_nce(logits, target, ignore)
    total = int(all_reduce_sum(rows.sum()).item())
    if total == 0:
        return scale * 0.0, {"hard_negative/regions": scale.new_tensor(0.0)}
    correct = hard_negative_hits(region_embeds, region_text_embeds, negative_embeds, negative_present)
    return _global_mean(per_region, total), {
        "hard_negative/regions": torch.tensor(float(total)),
        "hard_negative/accuracy": correct.float().mean()
        if correct.numel()
        else scale.new_tensor(0.0).detach(),
    }


@torch.no_grad()
def hard_negative_hits(
    region_embeds: torch.Tensor,
    region_text_embeds: torch.Tensor,
    negative_embeds: torch.Tensor,
    negative_present: torch.Tensor,
) -> torch.Tensor:
    """(M',) bool for each region with at least one hard negative: its own caption outscores every one of its
    negatives (a tie is a miss). The training report and `fgclip eval` count hard-negative accuracy with this."""
    rows = negative_present.any(1)  # (M,)
    positive = (region_embeds * region_text_embeds).sum(-1)  # (M,)
    negative = torch.einsum("md,mkd->mk", region_embeds, negative_embeds)  # (M, K)
    negative = negative.masked_fill(~negative_present, float("-inf"))
    return (positive > negative.max(1).values)[rows]


# `clip_classes` value of an abnormal clip whose anomaly class is not known (data/batch.py)
UNKNOWN_ANOMALY_CLASS = -1


def video_label_loss(
    clip_embeds: torch.Tensor,
    prompt_embeds: torch.Tensor,
    prompt_classes: torch.Tensor,
    clip_classes: torch.Tensor,
    scale: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Each clip against the label prompt set: -log of its class's probability mass.

    clip_embeds (B, D) and prompt_embeds (P, D) normalised; prompt_classes (P,) class of each prompt (0 normal);
    clip_classes (B,) the clip's class, or UNKNOWN_ANOMALY_CLASS for an abnormal clip of unknown class, whose
    target is every anomaly class together. The class mass is the zero-shot evaluator's `softmax_sum` rule
    (softmax over every prompt, summed per class), so the term trains the very score zero-shot AUC ranks.
    No gather: each clip's loss is its own (the prompts are the same on every rank).
    """
    logits = scale * clip_embeds.float() @ prompt_embeds.float().T  # (B, P)
    target = prompt_classes.unsqueeze(0) == clip_classes.unsqueeze(1)  # (B, P)
    unknown = (clip_classes == UNKNOWN_ANOMALY_CLASS).unsqueeze(1)  # (B, 1)
    target = torch.where(unknown, (prompt_classes > 0).unsqueeze(0), target)  # (B, P)
    missing = ~target.any(1)
    if missing.any():
        raise ValueError(
            f"video-label loss: clip class {int(clip_classes[missing][0])} has no prompt in the label "
            f"prompt set (classes 0..{int(prompt_classes.max())})"
        )
    log_mass = torch.logsumexp(logits.masked_fill(~target, float("-inf")), 1)  # (B,)
    per_clip = torch.logsumexp(logits, 1) - log_mass  # (B,)
    total = int(all_reduce_sum(clip_classes.new_tensor(clip_classes.shape[0])).item())
    probability = (-per_clip).exp().mean().detach()  # the mean clip's probability mass on its own class
    return _global_mean(per_clip, total), {"video_label/target_probability": probability}


def _duplicates(query_keys: torch.Tensor, pool_keys: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    same = query_keys.unsqueeze(1) == pool_keys.unsqueeze(0)  # (Q, P)
    same[torch.arange(same.shape[0], device=same.device), positive] = False
    return same


def _global_mean(per_query: torch.Tensor, global_count: int) -> torch.Tensor:
    world_size, _ = get_world_size_and_rank()
    return per_query.sum() * world_size / max(global_count, 1)
