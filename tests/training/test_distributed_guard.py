"""2-process gloo on CPU: ranks agree to skip a step when only one saw a non-finite loss (one all-reduce), and
the step report averages over micro-batches and ranks with sums and counts (ranks with different counts and
different keys)."""

from __future__ import annotations

import json
import os

import torch
from gloo_workers import free_port, init_gloo, shutdown_gloo, spawn
from torch import nn

from fgclip.training.nonfinite import DUMP_FILE, NonFiniteGuard
from fgclip.training.step_report import StepReport


def _worker(rank: int, world_size: int, port: int, out_dir: str):
    init_gloo(rank, world_size, port)
    try:
        results = {}
        # guard: rank 1's second micro-batch is NaN, rank 0's are finite
        guard = NonFiniteGuard(out_dir, max_consecutive=5)
        layer = nn.Linear(3, 2)
        layer(torch.ones(1, 3)).sum().backward()
        for micro_batch in range(2):
            loss = torch.tensor(float("nan") if rank == 1 and micro_batch == 1 else 1.0)
            guard.record(
                7, loss, {"region_loss": loss}, [f"r{rank}-m{micro_batch}-a", f"r{rank}-m{micro_batch}-b"]
            )
        results["skipped"] = guard.step_is_skipped()
        if results["skipped"]:
            guard.skip(7, layer)
        results["grads_dropped"] = all(p.grad is None for p in layer.parameters())
        # next step finite everywhere: no skip, the streak ends
        guard.record(8, torch.tensor(2.0), {}, ["x"])
        results["next_skipped"] = guard.step_is_skipped()

        # step report: rank 0 adds two micro-batches with keys a, b; rank 1 one micro-batch with key a only
        report = StepReport()
        if rank == 0:
            report.add({"a": torch.tensor(1.0), "b": 2.0})
            report.add({"a": torch.tensor(1.0), "b": 4.0})
        else:
            report.add({"a": torch.tensor(4.0)})
        results["report"] = report.flush()
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        shutdown_gloo()


def test_two_ranks_agree_to_skip_and_average_reports(tmp_path):
    spawn(_worker, (2, free_port(), str(tmp_path)))
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for rank, result in enumerate(results):
        assert result["skipped"] is True, f"rank {rank} did not skip"  # rank 0 saw only finite losses
        assert result["grads_dropped"] is True
        assert result["next_skipped"] is False
        assert result["report"] == {"a": 2.0, "b": 3.0}  # a: (1 + 1 + 4) / 3, b: (2 + 4) / 2
    dumped = [json.loads(line) for line in (tmp_path / DUMP_FILE).read_text().splitlines()]
    assert [(d["rank"], d["micro_batch"], d["sample_ids"]) for d in dumped] == [
        (1, 1, ["r1-m1-a", "r1-m1-b"])
    ]
