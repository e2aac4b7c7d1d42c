"""Per-optimizer-step report: values from every micro-batch and every rank, averaged with sums and counts."""

from __future__ import annotations

from collections import defaultdict

import torch

from fgclip.distributed import all_reduce_sum, gather_objects, get_world_size_and_rank


class StepReport:
    """Accumulates detached scalars between optimizer steps; `flush()` averages them over micro-batches
    and ranks. Nothing here knows the accumulation count: a step's value is sum / count of what was added."""

    def __init__(self):
        self._sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), dtype=torch.float64))
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, values: dict[str, torch.Tensor | float]) -> None:
        for name, value in values.items():
            value = (
                value.detach().double().cpu()
                if isinstance(value, torch.Tensor)
                else torch.tensor(float(value))
            )
            self._sums[name] = self._sums[name] + value.double()
            self._counts[name] += 1

    def flush(self, device: torch.device | str = "cpu") -> dict[str, float]:
        """Average over micro-batches and ranks, then reset. Every rank must call it (a collective)."""
        names = sorted(self._sums)
        world_size, _ = get_world_size_and_rank()
        if world_size > 1:
            names = _union_of_names(names, device)
        sums = (
            torch.stack(
                [self._sums[n] if n in self._sums else torch.zeros((), dtype=torch.float64) for n in names]
            )
            if names
            else torch.zeros(0, dtype=torch.float64)
        )
        counts = torch.tensor([float(self._counts.get(n, 0)) for n in names], dtype=torch.float64)
        totals = all_reduce_sum(torch.cat([sums, counts]).to(device)).cpu()
        sums, counts = totals[: len(names)], totals[len(names) :]
        self._sums.clear()
        self._counts.clear()
        return {n: float(s / c) for n, s, c in zip(names, sums, counts, strict=True) if c > 0}


def _union_of_names(names: list[str], device) -> list[str]:
    """Ranks may report different keys (e.g. no hard negatives on one rank); agree on the union."""
    return sorted(set().union(*gather_objects(names)))
