"""Non-finite loss guard through the real Trainer: a NaN micro-batch skips its optimizer step (with gradient
accumulation), never reaches the memory bank, is dumped with its sample ids, and too many in a row stop the run."""

from __future__ import annotations

import json

import torch
from transformers import TrainerCallback

from fgclip.cli import main
from fgclip.config import load_config
from fgclip.losses.objective import FGCLIPObjective
from fgclip.tools import training_run as run
from fgclip.training.nonfinite import DUMP_FILE


def _poison(monkeypatch, calls_to_poison):
    """Make the objective see NaN region features on the given micro-batch calls (0-based), as a broken
    clip or an overflow would; records each call's sample ids."""
    seen = []
    objective = FGCLIPObjective.__call__

    def poisoned(self, features, batch, region_negatives=None):
        if len(seen) in calls_to_poison:
            features["region_embeds"] = features["region_embeds"] * float("nan")
        seen.append(list(batch["sample_ids"]))
        return objective(self, features, batch, region_negatives)

    monkeypatch.setattr(FGCLIPObjective, "__call__", poisoned)
    return seen


class ParameterHistory(TrainerCallback):
    def __init__(self):
        self.after_step, self.grads_before_step = {}, {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads_before_step[state.global_step + 1] = [p.grad for p in model.parameters()]

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after_step[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}


def test_nonfinite_micro_batch_skips_the_step_and_never_reaches_the_bank(
    tiny_synth, tmp_path, train_args, read_rows, monkeypatch, capsys
):
    seen = _poison(monkeypatch, calls_to_poison={2})  # step 2, first of its two micro-batches
    history = ParameterHistory()
    argv = train_args(
        tiny_synth, tmp_path / "run", "--max_steps", "3", "--per_device_batch_size", "3",
        "--gradient_accumulation_steps", "2", "--bank.size", "32", "--bank.warmup_steps", "1",
        "--save_steps", "3",
    )  # fmt: skip
    outcome = run.train(load_config(argv[1], argv[2:]), callbacks=[history])

    # step 2 was skipped on all its micro-batches' account: no update, and no NaN gradient reached step 3
    for name, value in history.after_step[2].items():
        assert torch.equal(value, history.after_step[1][name]), f"{name} changed in the skipped step"
    assert all(g is None for g in history.grads_before_step[2])
    assert all(g is None or torch.isfinite(g).all() for g in history.grads_before_step[3])
    assert any(not torch.equal(v, history.after_step[2][n]) for n, v in history.after_step[3].items())

    rows = read_rows(outcome.output_dir)
    assert [r["train/skipped_step"] for r in rows] == [0.0, 1.0, 0.0]
    assert rows[1]["train/nonfinite_micro_batches"] == 0.5  # one of the step's two micro-batches
    assert all(value == value for row in rows for value in row.values() if isinstance(value, float))  # no NaN

    # the bank holds 3 steps x 2 micro-batches x 3 regions, minus the 3 rows of the poisoned micro-batch
    bank = outcome.model.memory_bank
    assert torch.isfinite(bank.image_embeds).all() and torch.isfinite(bank.text_embeds).all()
    written = bank.steps[bank.steps >= 0]
    assert written.numel() == 15 and int((written == 1).sum()) == 3

    dumped = [json.loads(line) for line in (outcome.output_dir / DUMP_FILE).read_text().splitlines()]
    assert len(dumped) == 1
    assert dumped[0]["step"] == 2 and dumped[0]["micro_batch"] == 0 and dumped[0]["sample_ids"] == seen[2]
    assert dumped[0]["losses"]["region_loss"] == "nan"
    printed = capsys.readouterr().out
    assert (
        "[non-finite] step 2: loss NaN/inf in rank 0 micro-batch 0; optimizer step skipped (1/5 in a row)"
        in printed
    )
    assert "step 2/3 | SKIPPED (non-finite loss)" in printed


def test_too_many_nonfinite_steps_in_a_row_stop_the_run(
    tiny_synth, tmp_path, train_args, monkeypatch, capsys
):
    _poison(monkeypatch, calls_to_poison=set(range(100)))
    out = tmp_path / "run"
    argv = train_args(
        tiny_synth,
        out,
        "--max_steps",
        "6",
        "--per_device_batch_size",
        "3",
        "--max_consecutive_nonfinite",
        "3",
    )
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert "the loss was non-finite (NaN/inf) in 3 consecutive optimizer steps (1..3" in error
    assert str(out / DUMP_FILE) in error
    steps = [json.loads(line)["step"] for line in (out / DUMP_FILE).read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert not (out / "model").exists()
