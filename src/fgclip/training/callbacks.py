"""Trainer callbacks: per-step metrics (jsonl + TensorBoard + console), loss-curve plot, temperature clamp,
the sampler's epoch on resume."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from fgclip.distributed import is_rank_zero
from fgclip.losses.terms import LOSS_TERMS
from fgclip.training.loss_plot import plot_loss_curves, warn_on_stderr
from fgclip.training.step_report import StepReport

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss_curves.png"


class MetricsLogger(TrainerCallback):
    """One JSON object per optimizer step in `metrics.jsonl` (appended across restarts, never truncated),
    TensorBoard (unless `tensorboard=False`) and every experiment tracker of `train.report_to`, on rank 0; a
    one-line console summary every `logging_steps`.

    Trackers: HF's integration callbacks (`forward_to`, `integration_callbacks`) keep their own set-up and
    teardown (run start, params, end); the Trainer never calls their `on_log` here (logging_strategy "no": the
    StepReport, not the Trainer's running loss, is what is logged), so this callback hands them each step's row,
    named as in metrics.jsonl except where a name is also the group of others (`tracker_logs`).

    Values are the StepReport's: averaged over the step's micro-batches and over ranks with sums and counts.
    Learning rates are read at `on_optimizer_step`, i.e. the rates this step's update used (the scheduler
    steps right after).
    """

    def __init__(
        self,
        report: StepReport,
        output_dir: str | Path,
        samples_per_step: int,
        bank_capacity: int | None = None,
        tensorboard: bool = True,
    ):
        self.report = report
        self.tensorboard = tensorboard
        self.trackers: list[TrainerCallback] = []
        self.path = Path(output_dir) / METRICS_FILE
        self.samples_per_step = samples_per_step
        self.bank_capacity = bank_capacity
        self._writer = None
        self._last_time = None
        self._rates: dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time = time.perf_counter()
        if is_rank_zero():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(log_dir=str(Path(args.output_dir) / "tensorboard"))

    def forward_to(self, trackers: list[TrainerCallback]) -> None:
        """HF integration callbacks that receive each step's row through their `on_log`."""
        self.trackers = list(trackers)

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self._rates = group_rates_of(optimizer) if optimizer is not None else {}

    def on_step_end(self, args, state, control, **kwargs):
        values = self.report.flush(args.device)  # a collective: every rank calls it
        now = time.perf_counter()
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        row.update({name: values[name] for name in sorted(values)})
        row.update(self._rates)
        row["samples_per_s"] = self.samples_per_step / max(now - self._last_time, 1e-9)
        self._last_time = now
        if is_rank_zero():
            self._write(row)
            logs = tracker_logs(row)
            for tracker in self.trackers:  # step = state.global_step, as each integration reads it
                tracker.on_log(args, state, control, logs=dict(logs), model=kwargs.get("model"))
            if (
                state.global_step % args.logging_steps == 0
                or state.global_step == state.max_steps
                or row.get("train/skipped_step", 0) > 0
            ):
                print(console_line(row, state.max_steps, self.bank_capacity), flush=True)

    def _write(self, row: dict) -> None:
        with self.path.open("a+b") as f:  # appends always go to the end; the "+" lets us read the last byte
            if _ends_mid_line(f):
                warn_on_stderr(
                    f"{self.path}: the last line was cut short (a crash or a full disk); it is skipped when "
                    "read, and rows continue on a new line"
                )
                f.write(b"\n")
            f.write((json.dumps(row) + "\n").encode())
        if self._writer is None:
            return
        for name, value in row.items():
            if name not in ("step", "epoch") and isinstance(value, (int, float)):
                self._writer.add_scalar(name, value, row["step"])

    def on_train_end(self, args, state, control, **kwargs):
        if self._writer is not None:
            self._writer.close()


# metrics.jsonl names that are also a group of other names ("loss" beside "loss/region"): a store that keeps one
# file per metric (MLflow's file store) cannot hold both -- it fails on "loss/region" and, logging
# asynchronously, drops the rest of the step silently. Trackers get these names instead.
TRACKER_RENAMES = {"loss": "loss/total", "lr": "lr/main"}


def tracker_logs(row: dict) -> dict[str, float]:
    """A metrics.jsonl row as trackers receive it: numbers only, no step (they read state.global_step), and no
    name that is also a group of other names (TRACKER_RENAMES; any other such name gets "/value")."""
    numbers = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
    groups = {k.rsplit("/", 1)[0] for k in numbers if "/" in k}
    return {(TRACKER_RENAMES.get(k, f"{k}/value") if k in groups else k): v for k, v in numbers.items()}


def integration_callbacks(trainer) -> list[TrainerCallback]:
    """The experiment-tracker callbacks HF's Trainer built from `args.report_to` (wandb, mlflow, ...)."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    kinds = tuple(INTEGRATION_TO_CALLBACK.values())
    return [callback for callback in trainer.callback_handler.callbacks if isinstance(callback, kinds)]


def _ends_mid_line(f) -> bool:
    end = f.seek(0, os.SEEK_END)
    if end == 0:
        return False
    f.seek(end - 1)
    return f.read(1) != b"\n"


def group_rates_of(optimizer) -> dict[str, float]:
    """{"lr": heads' rate, "lr/<kind>": each group kind's rate} from the optimizer's named param groups."""
    rates = {}
    for i, group in enumerate(optimizer.param_groups):
        kind = str(group.get("name", i)).split("/")[0]
        rates[f"lr/{kind}"] = float(group["lr"])
    main = rates.get("lr/heads", next(iter(rates.values()), None))
    return {"lr": main, **rates} if main is not None else rates


class LossCurvePlot(TrainerCallback):
    """Refresh `loss_curves.png` from `metrics.jsonl` on every save and at the end.

    The plot is a by-product: a failure to draw or write it is reported in one line and the run goes on
    (it must never cost a save or the final `model/`). Each torn metrics line is reported once per run.
    """

    def __init__(self, output_dir: str | Path, memory_bank_warmup_steps: int | None):
        self.output_dir = Path(output_dir)
        self.warmup = memory_bank_warmup_steps
        self._reported: set[str] = set()

    def _plot(self):
        if not (is_rank_zero() and (self.output_dir / METRICS_FILE).is_file()):
            return
        out = self.output_dir / PLOT_FILE
        try:
            plot_loss_curves(self.output_dir / METRICS_FILE, out, self.warmup, warn=self._warn_once)
        except Exception as error:  # any plotting failure (matplotlib, disk, data) is reported, never fatal
            warn_on_stderr(f"{out} not written ({type(error).__name__}: {error}); training goes on")

    def _warn_once(self, message: str) -> None:
        if message not in self._reported:
            self._reported.add(message)
            warn_on_stderr(message)

    def on_save(self, args, state, control, **kwargs):
        self._plot()

    def on_train_end(self, args, state, control, **kwargs):
        self._plot()


class SamplerEpochCallback(TrainerCallback):
    """Sets the sampler's epoch from the Trainer state at each epoch start (see `fgclip.data.sampler`)."""

    def __init__(self, sampler):
        self.sampler = sampler

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.sampler.set_epoch(int(math.floor(state.epoch + 1e-9)))
        return control


class TemperatureClamp(TrainerCallback):
    """Clamp the log-temperatures to <= logit_scale_max after every optimizer step, in the weights the
    optimizer updates.

    Without DeepSpeed (plain, DDP, torch autocast) those are the model's parameters. Under DeepSpeed ZeRO
    (1/2, and its bf16 optimizer; 3 too) the optimizer updates fp32 master partitions and copies them into
    the (bf16) model parameters at each step, so a clamp of the model's copy alone is overwritten at the
    next step and the master can drift past the ceiling: the masters are clamped through DeepSpeed's public
    `safe_get_full_fp32_param` / `safe_set_full_fp32_param`, then the model's copy. The forward also
    exponentiates min(log-scale, ceiling) (`FGCLIPModel._temperatures`), so the losses never see more.

    `safe_get_full_fp32_param` all-reduces over the data-parallel group: every rank runs this callback
    (HF calls callbacks on all ranks), in the same order.
    """

    def __init__(self, model):
        self.model = model

    def on_optimizer_step(self, args, state, control, **kwargs):
        clamp_master_logit_scales(self.model)


def clamp_master_logit_scales(model) -> None:
    """Clamp `model`'s log-temperatures to <= `config.logit_scale_max`: DeepSpeed's fp32 masters where
    DeepSpeed holds them, and the model's own parameters."""
    ceiling = model.config.logit_scale_max
    deepspeed_utils = _deepspeed_utils()
    for scale in model.logit_scales().values():
        master = deepspeed_utils.safe_get_full_fp32_param(scale) if deepspeed_utils else None
        if master is not None and bool(master.max() > ceiling):
            deepspeed_utils.safe_set_full_fp32_param(scale, master.clamp(max=ceiling))
    model.clamp_logit_scales()  # the model's copy, read by the forwards before the next step's copy-back


def _deepspeed_utils():
    """`deepspeed.utils` when DeepSpeed is loaded (a DeepSpeed run has imported it), else None: nothing
    imports DeepSpeed for a run that does not use it."""
    if "deepspeed" not in sys.modules:
        return None
    import deepspeed.utils

    return deepspeed.utils


def negatives_composition(row: dict) -> str:
    """`neg 3+8f+24b`: in-batch + fresh text + banked negatives per region query (`neg 3` without a bank)."""
    banked = row.get("memory_bank/negatives_per_query", 0.0)
    fresh = row.get("memory_bank/fresh_negatives_per_query", 0.0)
    text = f"neg {row['region/negatives_per_query'] - banked:.0f}"
    if "memory_bank/fresh_text" in row:
        text += f"+{fresh:.0f}f"
    return text + (f"+{banked - fresh:.0f}b" if "memory_bank/negatives_per_query" in row else "")


def console_line(row: dict, max_steps: int, bank_capacity: int | None = None) -> str:
    """`step 40/300 | loss 9.1 | global 2.3 | region 4.1 | hard_negative 2.7 | bank 32/32 | neg 3+8f+24b | lr 1.0e-03 | 51.2 samples/s`

    `neg` is the mean region query's negatives: in-batch + fresh text (`f`, re-encoded this step) + banked
    (`b`, stored embeddings), after masking same-caption duplicates."""
    parts = [f"step {row['step']}/{max_steps}"]
    if row.get("train/skipped_step", 0) > 0:
        parts.append("SKIPPED (non-finite loss)")
    if "loss" in row:
        parts.append(f"loss {row['loss']:.4f}")
    for term in LOSS_TERMS:
        if term.log_key in row:
            parts.append(f"{term.name} {row[term.log_key]:.4f}")
    if "memory_bank/size" in row:
        fill = f"{int(row['memory_bank/size'])}" + (f"/{bank_capacity}" if bank_capacity else "")
        parts.append(f"bank {fill}" + ("" if row.get("memory_bank/enabled", 0) >= 1 else " (warm-up)"))
    if "region/negatives_per_query" in row:
        parts.append(negatives_composition(row))
    if row.get("lr") is not None:
        parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{row['samples_per_s']:.1f} samples/s")
    return " | ".join(parts)
