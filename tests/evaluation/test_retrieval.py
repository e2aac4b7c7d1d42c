"""Retrieval metrics on hand-made similarities with known answers."""

import pytest
import torch

from fgclip.evaluation.retrieval import chance_recall_at_k, recall_at_k, retrieval_report


def test_recall_known_answer():
    similarity = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.7, 0.0], [0.1, 0.2, 0.3]])
    relevant = torch.eye(3, dtype=torch.bool)
    # query 0: rank 0; query 1: one item above (0.8) -> rank 1; query 2: rank 0
    assert recall_at_k(similarity, relevant, ks=(1, 2)) == {1: pytest.approx(2 / 3), 2: 1.0}


def test_ties_count_against_the_query():
    similarity = torch.ones(4, 4)  # a collapsed model
    assert recall_at_k(similarity, torch.eye(4, dtype=torch.bool), ks=(1,))[1] == 0.0


def test_duplicate_captions_are_all_relevant():
    keys = torch.tensor([1, 1, 2])
    embeds = torch.eye(3)
    captions = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 0 and 1 swapped, same text
    report = retrieval_report(embeds, captions, keys, keys, ks=(1,))
    assert report["image_to_text_R@1"] == 1.0 and report["text_to_image_R@1"] == 1.0


def test_chance_level():
    relevant = torch.eye(10, dtype=torch.bool)
    assert chance_recall_at_k(relevant, ks=(1, 5))[1] == pytest.approx(0.1)
    assert chance_recall_at_k(relevant, ks=(1, 5))[5] == pytest.approx(0.5)
    two = torch.zeros(1, 4, dtype=torch.bool)
    two[0, :2] = True
    assert chance_recall_at_k(two, ks=(1,))[1] == pytest.approx(0.5)
