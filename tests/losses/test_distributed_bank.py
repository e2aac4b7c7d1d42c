"""A real 2-process gloo run on CPU through the alignment task (the object the trainer calls): the region loss
with the memory bank, under DDP, equals a single process on the concatenated batch (loss and gradients, 1e-5),
and every rank ends with the identical bank — also with fresh text negatives (every rank re-encodes the same
banked captions, with gradient)."""

import os
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from gloo_workers import free_port, init_gloo, shutdown_gloo, spawn
from torch import nn

from fgclip.losses.memory_bank import MemoryBankOptions
from fgclip.losses.objective import FGCLIPObjective
from fgclip.losses.task import AlignmentTask

STEPS = 4
SPLIT = (2, 5)  # rows per rank: uneven on purpose (valid regions differ per rank)


class Encoder(nn.Module):
    """A stand-in for FGCLIPModel: batch in, the region features the region loss term reads out."""

    config = SimpleNamespace(projection_dim=4)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.image = nn.Linear(6, 4)
        self.text = nn.Linear(6, 4)
        self.logit_scale_finegraind = nn.Parameter(torch.tensor(2.0))
        self.memory_bank = None

    def forward(self, images, texts, **_batch):
        return {
            "region_embeds": F.normalize(self.image(images), dim=-1),
            "region_text_embeds": F.normalize(self.text(texts), dim=-1),
            "logit_scale_finegraind": self.logit_scale_finegraind.exp(),
        }


class CaptionEncoder(nn.Module):
    """The stand-in with a text tower over token ids (`get_text_features`), as fresh text negatives need."""

    config = SimpleNamespace(projection_dim=4)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.image = nn.Linear(6, 4)
        self.logit_scale_finegraind = nn.Parameter(torch.tensor(2.0))
        self.tokens = nn.Embedding(VOCAB, 4)
        self.memory_bank = None

    def get_text_features(self, input_ids, attention_mask=None):
        return (self.tokens(input_ids) * attention_mask.unsqueeze(-1)).sum(1)  # (N, 4)

    def forward(self, images, region_caption_ids, region_caption_mask, region_valid, **_batch):
        ids, mask = region_caption_ids[region_valid], region_caption_mask[region_valid]  # (M, L)
        return {
            "region_embeds": F.normalize(self.image(images), dim=-1),
            "region_text_embeds": F.normalize(self.get_text_features(ids, mask), dim=-1),
            "logit_scale_finegraind": self.logit_scale_finegraind.exp(),
        }


VOCAB, CAPTION_LENGTH = 11, 3


def _data(step: int):
    generator = torch.Generator().manual_seed(100 + step)
    rows = sum(SPLIT)
    images, texts = torch.randn(rows, 6, generator=generator), torch.randn(rows, 6, generator=generator)
    keys = torch.randint(0, 5, (rows,), generator=generator)  # duplicates on purpose
    labels = torch.randint(0, 2, (rows,), generator=generator)
    return images, texts, keys, labels


def _batch(step: int, rows: slice) -> dict:
    images, texts, keys, labels = (t[rows] for t in _data(step))
    valid = torch.ones(len(keys), 1, dtype=torch.bool)  # one region slot per "clip"
    ids = torch.randint(
        0, VOCAB, (sum(SPLIT), 1, CAPTION_LENGTH), generator=torch.Generator().manual_seed(step)
    )
    return {
        "images": images,
        "texts": texts,
        "region_valid": valid,
        "region_caption_keys": keys.unsqueeze(1),
        "region_labels": labels.unsqueeze(1),
        "region_caption_ids": ids[rows],
        "region_caption_mask": torch.ones_like(ids[rows]),
    }


def _train(model, rows: slice, forward_model=None, fresh_text: int = 0):
    """STEPS steps of region loss + bank through the task; returns per-step losses, grads and the final bank."""
    forward_model = forward_model or model
    task = AlignmentTask(
        FGCLIPObjective({"global": 0, "region": 1, "hard_negative": 0}),
        MemoryBankOptions(size=9, warmup_steps=0, per_label=True, fresh_text=fresh_text, text_length=5),
    )
    bank = task.attach_bank(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses, grads = [], []
    for step in range(STEPS):
        loss = task(forward_model, _batch(step, rows), step).loss
        optimizer.zero_grad()
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        optimizer.step()
    return torch.stack(losses), torch.stack(grads), {k: v.clone() for k, v in bank.state_dict().items()}


def _worker(rank: int, world_size: int, port: int, out_dir: str, fresh_text: int = 0):
    init_gloo(rank, world_size, port)
    try:
        model = CaptionEncoder() if fresh_text else Encoder()
        ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
        start = sum(SPLIT[:rank])
        rows = slice(start, start + SPLIT[rank])
        result = _train(model, rows, forward_model=ddp, fresh_text=fresh_text)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        shutdown_gloo()


def test_two_process_region_loss_with_bank_matches_single_process(tmp_path):
    spawn(_worker, (2, free_port(), str(tmp_path)))
    (loss0, grad0, bank0), (loss1, grad1, bank1) = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    ref_loss, ref_grad, ref_bank = _train(Encoder(), slice(0, sum(SPLIT)))

    # each rank's loss is its share of the global mean; their average is the global loss
    torch.testing.assert_close((loss0 + loss1) / 2, ref_loss, atol=1e-5, rtol=0)
    # DDP averages the gradients: identical on both ranks and equal to the single-process gradient
    torch.testing.assert_close(grad0, grad1, atol=1e-6, rtol=0)
    torch.testing.assert_close(grad0, ref_grad, atol=1e-5, rtol=0)
    for key in ref_bank:
        assert torch.equal(bank0[key], bank1[key]), f"bank buffer {key} differs between ranks"
        torch.testing.assert_close(bank0[key], ref_bank[key], atol=1e-5, rtol=0, msg=f"bank buffer {key}")
    assert int((bank0["steps"] >= 0).sum()) > 0


def test_two_process_fresh_text_negatives_match_single_process(tmp_path):
    """Both ranks re-encode the same 4 banked captions; loss, gradients and bank equal one process's."""
    spawn(_worker, (2, free_port(), str(tmp_path), 4))
    (loss0, grad0, bank0), (loss1, grad1, bank1) = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    ref_loss, ref_grad, ref_bank = _train(CaptionEncoder(), slice(0, sum(SPLIT)), fresh_text=4)

    torch.testing.assert_close((loss0 + loss1) / 2, ref_loss, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad0, grad1, atol=1e-6, rtol=0)
    torch.testing.assert_close(grad0, ref_grad, atol=1e-5, rtol=0)
    for key in ref_bank:
        assert torch.equal(bank0[key], bank1[key]), f"bank buffer {key} differs between ranks"
        torch.testing.assert_close(bank0[key], ref_bank[key], atol=1e-5, rtol=0, msg=f"bank buffer {key}")
    assert bank0["caption_ids"].shape == (8, 5) and bank0["caption_ids"].any()
