"""MIL top-k objective: known answers, padding ignored."""

import math

import torch
import torch.nn.functional as F

from fgclip.head.objective import mil_align_loss, mil_loss, topk_count, topk_mean


def test_topk_count_is_floor_t_over_16_plus_one_of_the_unpadded_length():
    assert topk_count(torch.tensor([1, 15, 16, 31, 32, 256])).tolist() == [1, 1, 2, 2, 3, 17]


def test_topk_mean_known_answer_and_padding_never_counts():
    scores = torch.zeros(2, 40)
    scores[0, :17] = torch.linspace(0, 0.16, 17)  # 17 real snippets -> k = 2: 0.16 and 0.15
    scores[0, 17:] = 5.0  # padding larger than every real score
    scores[1, :3] = torch.tensor([0.2, 0.9, 0.4])  # k = 1: the max
    scores[1, 3:] = 7.0
    means = topk_mean(scores, torch.tensor([17, 3]))
    assert torch.allclose(means, torch.tensor([(0.16 + 0.15) / 2, 0.9]))


def test_mil_loss_is_bce_of_the_topk_mean():
    scores = torch.tensor([[0.2, 0.9, 0.4, 0.0], [0.1, 0.3, 0.0, 0.0]])
    loss = mil_loss(scores, torch.tensor([3, 2]), torch.tensor([1, 0]))
    assert math.isclose(float(loss), -(math.log(0.9) + math.log(1 - 0.3)) / 2, rel_tol=1e-6)


def test_mil_align_is_cross_entropy_of_per_class_topk_mean_logits():
    logits = torch.randn(2, 20, 3, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([18, 5])  # k = 2 and 1
    expected_video = torch.stack([
        logits[0, :18].topk(2, dim=0).values.mean(0),
        logits[1, :5].max(0).values,
    ])  # fmt: skip
    classes = torch.tensor([2, 0])
    assert torch.allclose(mil_align_loss(logits, lengths, classes), F.cross_entropy(expected_video, classes))
