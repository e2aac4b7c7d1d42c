"""Per-step logging: the rate each update used, per group; the console summary line; TensorBoard scalars; the
loss-curve PNG refreshed on every save and at the end."""

from __future__ import annotations

import re

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import TrainerCallback

from fgclip.config import load_config
from fgclip.tools import training_run as run
from fgclip.training.callbacks import PLOT_FILE, console_line


class PlotWatcher(TrainerCallback):
    def __init__(self, output_dir):
        self.plot, self.seen = output_dir / PLOT_FILE, {}

    def on_step_begin(self, args, state, control, **kwargs):
        self.seen[state.global_step] = self.plot.stat().st_mtime_ns if self.plot.exists() else None


def test_rows_console_tensorboard_and_plot(tiny_synth, tmp_path, train_args, read_rows, capsys):
    out = tmp_path / "run"
    argv = train_args(
        tiny_synth, out, "--max_steps", "4", "--per_device_batch_size", "3", "--train.warmup_steps", "2",
        "--learning_rate", "1e-3", "--text_lr", "1e-4", "--save_steps", "2", "--bank.size", "8",
        "--bank.warmup_steps", "2",
    )  # fmt: skip
    watcher = PlotWatcher(out)
    run.train(load_config(argv[1], argv[2:]), callbacks=[watcher])
    rows = read_rows(out)

    # the rate this step's update used: linear warm-up from 0 over 2 steps, then cosine over the last 2
    schedule = [0.0, 0.5, 1.0, 0.5]
    assert [r["lr"] for r in rows] == pytest.approx([1e-3 * f for f in schedule])
    assert [r["lr/text"] for r in rows] == pytest.approx([1e-4 * f for f in schedule])
    assert [r["lr/temperatures"] for r in rows] == pytest.approx([1e-3 * f for f in schedule])

    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert len(lines) == 4
    number = r"[0-9.e+-]+"
    assert re.fullmatch(
        rf"step 3/4 \| loss {number} \| global {number} \| region {number} \| hard_negative {number} \| "
        rf"bank \d+/8 \| neg \d+\+\d+b \| lr 1\.00e-03 \| {number} samples/s",
        lines[2],
    ), lines[2]
    assert "bank 0/8 (warm-up)" in lines[0]

    events = EventAccumulator(str(next((out / "tensorboard").glob("events.out.tfevents.*"))))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"loss", "loss/region", "memory_bank/size", "lr/text", "samples_per_s"} <= scalars
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3, 4]

    # the plot is written at the step-2 save (seen before step 3 begins) and rewritten at the end
    assert watcher.seen[0] is None and watcher.seen[1] is None and watcher.seen[2] is not None
    assert (out / PLOT_FILE).stat().st_mtime_ns > watcher.seen[3]


def test_console_line_marks_skipped_steps_and_the_bank_fill():
    row = {"step": 7, "train/skipped_step": 1.0, "memory_bank/size": 5.0, "memory_bank/enabled": 1.0}
    row.update({"lr": 2e-4, "samples_per_s": 12.0})
    assert console_line(row, 10, bank_capacity=32) == (
        "step 7/10 | SKIPPED (non-finite loss) | bank 5/32 | lr 2.00e-04 | 12.0 samples/s"
    )


def test_console_line_shows_the_negatives_composition():
    row = {"step": 3, "loss": 1.0, "lr": 1e-3, "samples_per_s": 4.0, "memory_bank/size": 32.0}
    row.update({"memory_bank/enabled": 1.0, "region/negatives_per_query": 35.0})
    row.update({"memory_bank/negatives_per_query": 32.0, "memory_bank/fresh_text": 8.0})
    row["memory_bank/fresh_negatives_per_query"] = 7.0  # one fresh entry shares the query's caption
    assert "| neg 3+7f+25b |" in console_line(row, 10, bank_capacity=32)
    del row["memory_bank/fresh_text"], row["memory_bank/fresh_negatives_per_query"]
    assert "| neg 3+32b |" in console_line(row, 10, bank_capacity=32)
    no_bank = {"step": 3, "region/negatives_per_query": 15.0, "samples_per_s": 4.0}
    assert console_line(no_bank, 10) == "step 3/10 | neg 15 | 4.0 samples/s"
