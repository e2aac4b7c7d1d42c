"""A real 2-process gloo run on CPU: the region loss with the memory bank, under DDP, equals a single process on
the concatenated batch (loss and gradients, 1e-5), and every rank ends with the identical bank."""

import os

import torch
import torch.nn.functional as F
from gloo_workers import free_port, init_gloo, shutdown_gloo, spawn
from torch import nn

from fgclip.distributed import gather_rows
from fgclip.losses.contrastive import region_loss
from fgclip.losses.memory_bank import RegionMemoryBank

STEPS = 4
SPLIT = (2, 5)  # rows per rank: uneven on purpose (valid regions differ per rank)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.image = nn.Linear(6, 4)
        self.text = nn.Linear(6, 4)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, images, texts):
        return (
            F.normalize(self.image(images), dim=-1),
            F.normalize(self.text(texts), dim=-1),
            self.logit_scale.exp(),
        )


def _data(step: int):
    generator = torch.Generator().manual_seed(100 + step)
    rows = sum(SPLIT)
    images, texts = torch.randn(rows, 6, generator=generator), torch.randn(rows, 6, generator=generator)
    keys = torch.randint(0, 5, (rows,), generator=generator)  # duplicates on purpose
    labels = torch.randint(0, 2, (rows,), generator=generator)
    return images, texts, keys, labels


def _train(model, rows: slice, forward_model=None):
    """STEPS steps of region loss + bank; returns per-step losses, grads and the final bank."""
    forward_model = forward_model or model
    bank = RegionMemoryBank(4, capacity=9, per_label=True)
    bank.enable()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses, grads = [], []
    for step in range(STEPS):
        images, texts, keys, labels = (t[rows] for t in _data(step))
        region, text, scale = forward_model(images, texts)
        loss, _ = region_loss(region, text, keys, scale, bank.read(step))
        optimizer.zero_grad()
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        optimizer.step()
        gathered = [gather_rows(t, grad=False)[0] for t in (region.detach(), text.detach(), keys, labels)]
        bank.write(*gathered, step=step)
    return torch.stack(losses), torch.stack(grads), {k: v.clone() for k, v in bank.state_dict().items()}


def _worker(rank: int, world_size: int, port: int, out_dir: str):
    init_gloo(rank, world_size, port)
    try:
        model = Encoder()
        ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
        start = sum(SPLIT[:rank])
        result = _train(model, slice(start, start + SPLIT[rank]), forward_model=ddp)
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
