"""Trainer callbacks: per-step metrics (jsonl + TensorBoard + console), loss-curve plot, temperature clamp."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from fgclip.distributed import is_rank_zero
from fgclip.training.plots import plot_loss_curves
from fgclip.training.report import StepReport

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss_curves.png"


class MetricsLogger(TrainerCallback):
    """One JSON object per optimizer step in `metrics.jsonl` (appended, never truncated) and TensorBoard."""

    def __init__(self, report: StepReport, output_dir: str | Path, samples_per_step: int):
        self.report = report
        self.path = Path(output_dir) / METRICS_FILE
        self.samples_per_step = samples_per_step
        self._writer = None
        self._last_time = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time = time.perf_counter()
        if is_rank_zero():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(Path(args.output_dir) / "tensorboard"))

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        values = self.report.flush(args.device)
        now = time.perf_counter()
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        row.update({name: values[name] for name in sorted(values)})
        if lr_scheduler is not None:
            rates = lr_scheduler.get_last_lr()
            row["lr"] = rates[0]
            groups = getattr(lr_scheduler.optimizer, "param_groups", [])
            row.update(
                {f"lr/{g.get('name', i)}": r for i, (g, r) in enumerate(zip(groups, rates, strict=False))}
            )
        row["samples_per_s"] = self.samples_per_step / max(now - self._last_time, 1e-9)
        self._last_time = now
        if is_rank_zero():
            self._write(row)
            if state.global_step % args.logging_steps == 0 or state.global_step == state.max_steps:
                print(_console_line(row, state.max_steps), flush=True)

    def _write(self, row: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for name, value in row.items():
            if name not in ("step", "epoch") and isinstance(value, (int, float)):
                self._writer.add_scalar(name, value, row["step"])

    def on_train_end(self, args, state, control, **kwargs):
        if self._writer is not None:
            self._writer.close()


class LossCurvePlot(TrainerCallback):
    """Refresh `loss_curves.png` from `metrics.jsonl` on every save and at the end."""

    def __init__(self, output_dir: str | Path, memory_bank_warmup_steps: int | None):
        self.output_dir = Path(output_dir)
        self.warmup = memory_bank_warmup_steps

    def _plot(self):
        if is_rank_zero() and (self.output_dir / METRICS_FILE).is_file():
            plot_loss_curves(self.output_dir / METRICS_FILE, self.output_dir / PLOT_FILE, self.warmup)

    def on_save(self, args, state, control, **kwargs):
        self._plot()

    def on_train_end(self, args, state, control, **kwargs):
        self._plot()


class SaveRunConfig(TrainerCallback):
    """Put the run's config next to every checkpoint, so `fgclip eval CHECKPOINT` knows how it was trained."""

    def __init__(self, config_file: str | Path):
        self.config_file = Path(config_file)

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if is_rank_zero() and checkpoint.is_dir():
            shutil.copyfile(self.config_file, checkpoint / self.config_file.name)


class MemoryBankSwitch(TrainerCallback):
    """Switch the region memory bank on when `global_step` (optimizer steps) reaches the warm-up.

    Checked before every optimizer step's first micro-batch, so with warm-up W the first W updates never
    see the bank and update W+1 is the first one trained with it, whatever the accumulation count.
    """

    def __init__(self, bank, warmup_steps: int):
        self.bank, self.warmup_steps = bank, warmup_steps

    def on_step_begin(self, args, state, control, **kwargs):
        if not self.bank.is_enabled and state.global_step >= self.warmup_steps:
            self.bank.enable()
            if is_rank_zero():
                print(
                    f"[memory bank] enabled at optimizer step {state.global_step}: capacity {self.bank.capacity}, "
                    f"filled {self.bank.filled()}",
                    flush=True,
                )


class TemperatureClamp(TrainerCallback):
    """Clamp the log-temperatures to <= logit_scale_max after every optimizer step."""

    def __init__(self, model):
        self.model = model

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.model.clamp_logit_scales()


def _console_line(row: dict, max_steps: int) -> str:
    parts = [f"step {row['step']}/{max_steps}", f"loss {row.get('loss', float('nan')):.4f}"]
    for name in ("loss/global", "loss/region", "loss/hard_negative"):
        if name in row:
            parts.append(f"{name.split('/')[1]} {row[name]:.4f}")
    if "memory_bank/size" in row:
        parts.append(f"bank {int(row['memory_bank/size'])}")
    if "lr" in row:
        parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{row['samples_per_s']:.1f} samples/s")
    return " | ".join(parts)
