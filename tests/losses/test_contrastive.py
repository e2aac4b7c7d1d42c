"""Losses against values computed by hand (math module, no torch in the expected values)."""

import math

import pytest
import torch

from fgclip.losses.contrastive import RegionNegatives, global_loss, hard_negative_loss, region_loss


def _ce(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def test_global_loss_matches_hand_computation():
    clips = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    captions = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    scale = torch.tensor(2.0)
    loss, _ = global_loss(clips, captions, torch.tensor([10, 11]), scale)
    clip_to_text = _ce([2.0, 1.2], 0) + _ce([0.0, 1.6], 1)
    text_to_clip = _ce([2.0, 0.0], 0) + _ce([1.2, 1.6], 1)
    expected = (clip_to_text + text_to_clip) / 2 / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_identical_captions_are_not_negatives():
    clips = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    captions = clips.clone()
    scale = torch.tensor(3.0)
    keys = torch.tensor([7, 7, 9])  # clips 0 and 1 share a caption
    loss, report = global_loss(clips, captions, keys, scale)
    # Row 0 sees only itself and clip 2; row 1 only itself and clip 2; row 2 sees all.
    row0 = _ce([3.0, 3 * 0.6], 0)
    row1 = _ce([3.0, 3 * 0.8], 0)
    row2 = _ce([3 * 0.6, 3 * 0.8, 3.0], 2)
    expected = 2 * (row0 + row1 + row2) / 3 / 2  # the matrix is symmetric: both directions are equal
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert report["global/masked_duplicates"].item() == 2


def test_region_loss_uses_extra_negatives_in_both_directions():
    regions = torch.tensor([[1.0, 0.0]])
    texts = torch.tensor([[0.8, 0.6]])
    bank = RegionNegatives(
        image_embeds=torch.tensor([[0.0, 1.0], [0.6, 0.8]]),
        text_embeds=torch.tensor([[0.6, -0.8], [1.0, 0.0]]),
        caption_keys=torch.tensor([5, 1]),  # the second bank entry has the query's caption: masked
    )
    loss, report = region_loss(regions, texts, torch.tensor([1]), torch.tensor(2.0), bank)
    region_to_text = _ce([2 * 0.8, 2 * 0.6], 0)  # batch text, bank text 0 (bank text 1 masked)
    text_to_region = _ce([2 * 0.8, 2 * 0.6], 0)  # batch region, bank region 0 (bank region 1 masked)
    assert loss.item() == pytest.approx((region_to_text + text_to_region) / 2, abs=1e-6)
    assert report["region/negatives_per_query"].item() == 1
    assert report["region/masked_duplicates"].item() == 1


def test_region_loss_without_regions_is_zero_and_connected():
    scale = torch.tensor(2.0, requires_grad=True)
    loss, _ = region_loss(torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), scale)
    loss.backward()
    assert loss.item() == 0 and scale.grad is not None


def test_hard_negative_loss_masks_absent_negatives():
    regions = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    negatives = torch.tensor([[[0.6, 0.8], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    present = torch.tensor([[True, True], [False, False]])  # the second region has no negatives
    loss, report = hard_negative_loss(regions, texts, negatives, present, torch.tensor(5.0))
    assert loss.item() == pytest.approx(_ce([4.0, 3.0, 5.0], 0), abs=1e-6)
    assert report["hard_negative/regions"].item() == 1
    assert report["hard_negative/accuracy"].item() == 0  # the negative [1, 0] beats the caption
