"""RegionMemoryBank: FIFO ring semantics, per-label queues, max age, masking, both loss directions, no grad."""

import pytest
import torch

from fgclip.losses.contrastive import RegionNegatives, region_loss
from fgclip.losses.memory_bank import RegionMemoryBank


def _rows(start: int, count: int, dim: int = 2, label: int = 0):
    ids = torch.arange(start, start + count)
    embeds = ids.float().unsqueeze(1).repeat(1, dim)  # row value = its id: easy to trace
    return embeds, -embeds, ids, torch.full((count,), label)


def _ids(bank: RegionMemoryBank, step: int = 0) -> list[int]:
    return sorted(bank.read(step).caption_keys.tolist())


def test_ring_wraps_around_with_odd_write_sizes():
    bank = RegionMemoryBank(2, capacity=8)
    written = 0
    for size in (3, 5, 7, 1):
        bank.write(*_rows(written, size), step=written)
        written += size
        assert _ids(bank, step=written) == list(range(max(0, written - 8), written))
    assert int(bank.pointers[0]) == written % 8
    # the slot order is the FIFO order: slot i holds the newest id congruent to i mod 8
    assert bank.caption_keys.tolist() == [8, 9, 10, 11, 12, 13, 14, 15]


def test_a_write_larger_than_the_capacity_keeps_the_newest_rows():
    bank = RegionMemoryBank(2, capacity=8)
    bank.write(*_rows(0, 3), step=0)
    bank.write(*_rows(3, 11), step=1)
    assert _ids(bank, step=1) == list(range(6, 14))
    assert int(bank.pointers[0]) == (3 + 11) % 8
    reference = RegionMemoryBank(2, capacity=8)
    for i in range(14):  # the same rows written one at a time end in the same slots
        reference.write(*_rows(i, 1), step=0)
    assert torch.equal(bank.caption_keys, reference.caption_keys)


def test_per_label_queues_do_not_evict_each_other():
    bank = RegionMemoryBank(2, capacity=8, per_label=True)
    bank.write(*_rows(100, 2, label=1), step=0)
    bank.write(*_rows(0, 20, label=0), step=0)  # a flood of normal regions
    assert _ids(bank) == [16, 17, 18, 19, 100, 101]
    assert bank.queue_size == 4


def test_max_age_hides_stale_entries_and_reports_age():
    bank = RegionMemoryBank(2, capacity=8, max_age=3)
    bank.write(*_rows(0, 2), step=1)
    bank.write(*_rows(2, 2), step=4)
    assert _ids(bank, step=4) == [0, 1, 2, 3]
    assert _ids(bank, step=5) == [2, 3]  # written at step 1: age 4 > 3
    bank.enable()
    report = bank.report(torch.tensor([2, 7]), step=5)
    assert report["memory_bank/size"].item() == 2
    assert report["memory_bank/mean_age"].item() == 1
    assert report["memory_bank/negatives_per_query"].item() == pytest.approx(1.5)  # query 2 masks one entry
    assert report["memory_bank/masked_duplicates"].item() == 1


def test_nothing_in_the_bank_requires_grad():
    bank = RegionMemoryBank(4, capacity=4)
    embeds = torch.randn(3, 4, requires_grad=True)
    bank.write(embeds * 2, embeds * 3, torch.arange(3), torch.zeros(3, dtype=torch.long), step=0)
    assert not any(buffer.requires_grad for buffer in bank.buffers())
    negatives = bank.read(0)
    assert not negatives.image_embeds.requires_grad and not negatives.text_embeds.requires_grad
    assert list(bank.parameters()) == []


def _unit(*values):
    vector = torch.tensor(values, dtype=torch.float32)
    return (vector / vector.norm()).unsqueeze(0)


def test_both_directions_use_the_bank_and_duplicate_keys_are_masked():
    region, text = _unit(1.0, 0.0), _unit(0.0, 1.0)
    keys, scale = torch.tensor([5]), torch.tensor(10.0)
    base, _ = region_loss(region, text, keys, scale)
    far = _unit(-1.0, -1.0)
    # a bank TEXT close to the region only hurts region->text
    text_side = RegionNegatives(far, _unit(1.0, 0.1), torch.tensor([6]))
    # a bank REGION close to the text only hurts text->region
    region_side = RegionNegatives(_unit(0.1, 1.0), far, torch.tensor([6]))
    with_text, _ = region_loss(region, text, keys, scale, text_side)
    with_region, _ = region_loss(region, text, keys, scale, region_side)
    assert with_text.item() > base.item() + 1.0 and with_region.item() > base.item() + 1.0
    # the same entries carrying the query's caption key are false negatives: masked, no effect
    masked = RegionNegatives(_unit(0.1, 1.0), _unit(1.0, 0.1), torch.tensor([5]))
    same, report = region_loss(region, text, keys, scale, masked)
    assert same.item() == pytest.approx(base.item(), abs=1e-6)
    assert report["region/masked_duplicates"].item() == 1
