"""A training process killed (SIGKILL) in the middle of writing a checkpoint leaves the previous checkpoint
intact and loadable, and `--resume latest` ignores the partial one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from safetensors.torch import load_file

from fgclip import FGCLIPModel
from fgclip.cli import main
from fgclip.training.checkpoints import STAGING_DIR, latest_checkpoint, list_checkpoints

# The child trains through the real CLI; its save of checkpoint-4 stalls after the weights and the optimizer
# state are written (before the RNG states and trainer_state.json), announces it, and waits to be killed.
CHILD = """
import pathlib, sys, time
from fgclip.training.trainer import FGCLIPTrainer

write_rng_state = FGCLIPTrainer._save_rng_state

def stalled(self, output_dir):
    if self.state.global_step == 4:
        pathlib.Path({marker!r}).write_text(output_dir)
        time.sleep(600)
    return write_rng_state(self, output_dir)

FGCLIPTrainer._save_rng_state = stalled
from fgclip.cli import main
sys.exit(main({argv!r}))
"""


def _run_until_stalled(argv: list[str], marker) -> str:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(marker=str(marker), argv=argv)], env=os.environ
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert child.poll() is None, f"training exited with {child.returncode} before the stalled save"
            assert time.monotonic() < deadline, "the stalled save was never reached"
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    return marker.read_text()


def test_kill_during_save_keeps_the_previous_checkpoint(tiny_synth, tmp_path, train_args, read_rows, capsys):
    run = tmp_path / "run"
    steps = (
        "--max_steps",
        "4",
        "--per_device_batch_size",
        "3",
        "--save_steps",
        "2",
        "--save_total_limit",
        "1",
    )
    staged = _run_until_stalled(train_args(tiny_synth, run, *steps), tmp_path / "stalled")

    # The partial save lives under .staging; the checkpoint folders hold only the complete step-2 checkpoint.
    assert staged == str(run / STAGING_DIR / "checkpoint-4")
    assert (run / STAGING_DIR / "checkpoint-4" / "model.safetensors").is_file()
    assert not (run / STAGING_DIR / "checkpoint-4" / "trainer_state.json").exists()
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2"]
    previous = run / "checkpoint-2"
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        assert (previous / name).is_file(), name
    FGCLIPModel.from_pretrained(previous)  # a complete, loadable model
    assert any(key.startswith("memory_bank.") for key in load_file(previous / "model.safetensors"))
    assert latest_checkpoint(run) == previous

    assert main([*train_args(tiny_synth, run, *steps), "--resume", "latest"]) == 0
    printed = capsys.readouterr().out
    assert "removed partial saves of an interrupted run: checkpoint-4" in printed
    assert f"[resume] continuing from {previous}" in printed
    assert not (run / STAGING_DIR).exists()
    assert [p.name for p in list_checkpoints(run)] == [
        "checkpoint-4"
    ]  # save_total_limit 1 rotated step 2 away
    assert (
        load_file(run / "checkpoint-4" / "model.safetensors").keys()
        == load_file(run / "model" / "model.safetensors").keys()
    )
    assert [r["step"] for r in read_rows(run)] == [1, 2, 3, 4, 3, 4]  # steps 3-4 re-logged after the kill
