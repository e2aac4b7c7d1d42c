"""Non-finite loss guard: a NaN/inf loss skips the optimizer step, names its samples, and stops a broken run.

Per micro-batch the trainer records whether the loss was finite. At the optimizer step every rank adds up
its count in one all-reduce, so all ranks agree to skip; a skipped step drops the accumulated gradients
(nothing of its micro-batches reaches the weights or the next step). After `max_consecutive` skipped steps
in a row the run stops with `NonFiniteLossError`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from fgclip.distributed import all_reduce_sum, gather_objects, get_world_size_and_rank, is_rank_zero

DUMP_FILE = "nonfinite_batches.jsonl"


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class NonFiniteBatch:
    step: int  # the optimizer step being accumulated (1-based, as logged)
    micro_batch: int
    rank: int
    sample_ids: list[str]
    losses: dict[str, float] = field(default_factory=dict)


class NonFiniteGuard:
    def __init__(self, output_dir: str | Path, max_consecutive: int):
        self.dump_path = Path(output_dir) / DUMP_FILE
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.skipped_steps: list[int] = []
        self._pending: list[NonFiniteBatch] = []
        self._micro_batch = 0

    def record(self, step: int, loss: torch.Tensor, losses: dict[str, torch.Tensor], sample_ids) -> bool:
        """Note one micro-batch's loss; returns whether it is finite."""
        finite = bool(torch.isfinite(loss.detach()))
        if not finite:
            _, rank = get_world_size_and_rank()
            values = {name: float(value.detach()) for name, value in losses.items()}
            self._pending.append(NonFiniteBatch(step, self._micro_batch, rank, list(sample_ids), values))
        self._micro_batch += 1
        return finite

    def step_is_skipped(self, device: torch.device | str = "cpu") -> bool:
        """Every rank calls this once per optimizer step (one all-reduce): skip if any rank saw a non-finite loss."""
        count = all_reduce_sum(torch.tensor([float(len(self._pending))], device=device))
        return bool(count.item() > 0)

    def skip(self, step: int, model: torch.nn.Module) -> list[NonFiniteBatch]:
        """Drop the step's gradients, dump its non-finite micro-batches, stop after too many in a row."""
        for parameter in model.parameters():
            parameter.grad = None
        batches = [batch for part in gather_objects(self._pending) for batch in part]
        self.consecutive += 1
        self.skipped_steps.append(step)
        if is_rank_zero():
            self._dump(batches)
            print(
                _skip_line(step, batches, self.consecutive, self.max_consecutive, self.dump_path), flush=True
            )
        self._reset()
        if self.consecutive >= self.max_consecutive:
            first = self.skipped_steps[-self.consecutive]
            raise NonFiniteLossError(
                f"the loss was non-finite (NaN/inf) in {self.consecutive} consecutive optimizer steps "
                f"({first}..{step}; train.max_consecutive_nonfinite={self.max_consecutive}); stopping. The "
                f"micro-batches and their sample ids are in {self.dump_path}. Typical causes: a learning rate "
                "too high for the temperatures or towers, corrupt frames, bf16 overflow."
            )
        return batches

    def keep(self) -> None:
        """A finite step: the streak of skipped steps ends."""
        self.consecutive = 0
        self._reset()

    def _reset(self) -> None:
        self._pending = []
        self._micro_batch = 0

    def _dump(self, batches: list[NonFiniteBatch]) -> None:
        self.dump_path.parent.mkdir(parents=True, exist_ok=True)
        with self.dump_path.open("a") as f:
            for batch in batches:
                row = asdict(batch)
                row["losses"] = {k: _json_float(v) for k, v in batch.losses.items()}
                f.write(json.dumps(row) + "\n")


def _skip_line(step: int, batches: list[NonFiniteBatch], consecutive: int, limit: int, dump: Path) -> str:
    ids = [sample for batch in batches for sample in batch.sample_ids]
    shown = ", ".join(ids[:6]) + (f", ... ({len(ids)} in all)" if len(ids) > 6 else "")
    where = ", ".join(f"rank {b.rank} micro-batch {b.micro_batch}" for b in batches)
    return (
        f"[non-finite] step {step}: loss NaN/inf in {where}; optimizer step skipped ({consecutive}/{limit} in a "
        f"row); samples: {shown} -> {dump}"
    )


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
