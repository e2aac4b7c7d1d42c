"""Retrieval recall@K with duplicate-aware relevance, pessimistic ties, and the chance level of each figure.

An item is relevant to a query when their caption keys match: template captions repeat, and retrieving a
clip whose caption is identical to the query's is not an error. Ties are counted against the query, so a
collapsed model (every similarity equal) scores zero, not one.
"""

from __future__ import annotations

from math import comb

import torch


def recall_at_k(similarity: torch.Tensor, relevant: torch.Tensor, ks=(1, 5, 10)) -> dict[int, float]:
    """similarity (Q, N), relevant (Q, N) bool with at least one True per row -> {k: R@k}."""
    if not bool(relevant.any(1).all()):
        raise ValueError("every query needs at least one relevant item")
    best = similarity.masked_fill(~relevant, float("-inf")).max(1).values  # (Q,)
    rank = ((similarity >= best.unsqueeze(1)) & ~relevant).sum(1)  # (Q,) irrelevant items ranked at or above
    return {k: float((rank < k).float().mean()) for k in ks}


def chance_recall_at_k(relevant: torch.Tensor, ks=(1, 5, 10)) -> dict[int, float]:
    """Expected R@k of a uniformly random ranking: P(a top-k draw holds at least one relevant item)."""
    num_items = relevant.shape[1]
    counts = relevant.sum(1).tolist()
    result = {}
    for k in ks:
        k_eff = min(k, num_items)
        misses = [comb(num_items - n, k_eff) / comb(num_items, k_eff) for n in counts]
        result[k] = 1.0 - sum(misses) / len(misses)
    return result


def retrieval_report(
    query_embeds: torch.Tensor,
    item_embeds: torch.Tensor,
    query_keys: torch.Tensor,
    item_keys: torch.Tensor,
    ks=(1, 5, 10),
) -> dict[str, float]:
    """R@k both ways between paired sets (row i of each is a pair); `*_chance` entries give the chance levels."""
    similarity = query_embeds.float() @ item_embeds.float().T  # (N, N)
    relevant = query_keys.unsqueeze(1) == item_keys.unsqueeze(0)  # (N, N)
    report = {}
    for direction, sim, rel in (
        ("image_to_text", similarity, relevant),
        ("text_to_image", similarity.T, relevant.T),
    ):
        for k, value in recall_at_k(sim, rel, ks).items():
            report[f"{direction}_R@{k}"] = value
        for k, value in chance_recall_at_k(rel, ks).items():
            report[f"{direction}_R@{k}_chance"] = value
    return report
