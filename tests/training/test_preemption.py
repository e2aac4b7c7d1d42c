"""Preemption: a real `fgclip train` process gets SIGTERM / SIGUSR1 / SIGINT in the middle of an optimizer step
(between its two accumulated micro-batches). It finishes that step, saves it as a checkpoint, releases the output
lock, prints one line naming the checkpoint and `--resume latest`, and exits 128 + signal; `--resume latest` then
ends bit-exactly where an uninterrupted run ends (weights, memory bank, optimizer moments, logged metrics).
A step that outlasts `train.signal_grace_s` is abandoned: the process exits in time without a new checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from gloo_workers import free_port, init_gloo, shutdown_gloo, spawn
from safetensors.torch import load_file
from transformers import TrainerControl

from fgclip.cli import main
from fgclip.training.checkpoints import STAGING_DIR, list_checkpoints
from fgclip.training.lock import LOCK_FILE
from fgclip.training.preemption import PreemptionRequest, StopAndSave

RUN = (
    "--max_steps", "7", "--per_device_batch_size", "2", "--gradient_accumulation_steps", "2",
    "--save_steps", "100", "--train.warmup_steps", "2", "--bank.warmup_steps", "2", "--bank.size", "8",
)  # fmt: skip
STOP_AT = 3  # the signal arrives while step STOP_AT + 1 runs

# The child trains through the real CLI. At the first micro-batch of step STOP_AT + 1 it announces itself and
# waits (at most 60 s) for the signal the test sends, then goes on: the step is finished after the signal.
CHILD = """
import pathlib, sys, time
from transformers import TrainerCallback
from fgclip.commands import train as train_command
from fgclip.training import preemption

signalled = []
handle = preemption.PreemptionRequest.handle

def recording(self, signum, frame):
    signalled.append(signum)
    return handle(self, signum, frame)

preemption.PreemptionRequest.handle = recording

class WaitForSignal(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == {stop_at}:
            pathlib.Path({marker!r}).write_text(str(state.global_step))
            deadline = time.monotonic() + 60
            while not signalled and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep({extra_sleep})  # > signal_grace_s: the step outlasts the grace period

train = train_command.train
train_command.train = lambda config, callbacks=None: train(config, [*(callbacks or []), WaitForSignal()])
from fgclip.cli import main
sys.exit(main({argv!r}))
"""


def _run_and_signal(argv: list[str], marker, signum: int, extra_sleep: float = 0.0, group: bool = False):
    """`group`: signal the child's whole process group, loader workers included, as Ctrl-C in a terminal does."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD.format(marker=str(marker), argv=argv, stop_at=STOP_AT, extra_sleep=extra_sleep),
        ],
        env=os.environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert child.poll() is None, f"training exited with {child.returncode}: {child.stderr.read()}"
            assert time.monotonic() < deadline, "step 4 was never reached"
            time.sleep(0.05)
        sent = time.monotonic()
        os.killpg(child.pid, signum) if group else os.kill(child.pid, signum)
        out, err = child.communicate(timeout=120)
        return child.returncode, out, err, time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()


def _fgclip_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("fgclip train: ")]


def test_sigterm_mid_step_saves_and_resume_is_bit_exact(tiny_synth, tmp_path, train_args, read_rows):
    straight = tmp_path / "straight"
    assert main(train_args(tiny_synth, straight, *RUN)) == 0

    run = tmp_path / "preempted"
    code, out, err, seconds = _run_and_signal(
        train_args(tiny_synth, run, *RUN), tmp_path / "m", signal.SIGTERM
    )
    assert code == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    [line] = _fgclip_lines(err)
    saved = run / f"checkpoint-{STOP_AT + 1}"
    assert f"stopped by SIGTERM after optimizer step {STOP_AT + 1}: saved {saved}" in line, line
    assert "--resume latest" in line
    assert [p.name for p in list_checkpoints(run)] == [saved.name]
    assert (
        not (run / LOCK_FILE).exists() and not (run / STAGING_DIR).exists() and not (run / "model").exists()
    )
    assert seconds < 60, f"{seconds:.1f} s from the signal to the exit"

    assert main(train_args(tiny_synth, run, *RUN, "--resume", "latest")) == 0
    final_straight = load_file(straight / "checkpoint-7" / "model.safetensors")
    final_resumed = load_file(run / "checkpoint-7" / "model.safetensors")
    assert final_straight.keys() == final_resumed.keys()
    assert final_straight["memory_bank.enabled"].item() is True
    for key in final_straight:
        assert torch.equal(final_straight[key], final_resumed[key]), (
            f"{key} differs after the preempted resume"
        )
    moments = [torch.load(d / "checkpoint-7" / "optimizer.pt")["state"] for d in (straight, run)]
    for index, state in moments[0].items():
        assert torch.equal(state["exp_avg"], moments[1][index]["exp_avg"]), f"optimizer state {index}"
    straight_rows, resumed_rows = read_rows(straight), read_rows(run)
    assert [r["step"] for r in resumed_rows] == list(range(1, 8))
    for a, b in zip(straight_rows, resumed_rows, strict=True):
        assert (a["loss"], a["lr"], a["memory_bank/size"]) == (b["loss"], b["lr"], b["memory_bank/size"]), a[
            "step"
        ]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGINT], ids=["SIGUSR1", "SIGINT"])
def test_sigusr1_and_sigint_save_the_same_way(tiny_synth, tmp_path, train_args, signum):
    run = tmp_path / "run"
    code, out, err, _ = _run_and_signal(train_args(tiny_synth, run, *RUN), tmp_path / "m", signum)
    assert code == 128 + signum, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    [line] = _fgclip_lines(err)
    assert f"stopped by {signal.Signals(signum).name} after optimizer step {STOP_AT + 1}" in line
    assert [p.name for p in list_checkpoints(run)] == [f"checkpoint-{STOP_AT + 1}"]
    assert not (run / LOCK_FILE).exists()


@pytest.mark.slow
def test_ctrl_c_to_the_process_group_with_loader_workers_saves_too(tiny_synth, tmp_path, train_args):
    """Ctrl-C reaches the DataLoader workers too (forked with the handler): they keep serving, the trainer stops."""
    run = tmp_path / "run"
    argv = train_args(tiny_synth, run, *RUN, "--data.num_workers", "2")
    code, out, err, _ = _run_and_signal(argv, tmp_path / "m", signal.SIGINT, group=True)
    assert code == 128 + signal.SIGINT, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    [line] = _fgclip_lines(err)
    assert f"stopped by SIGINT after optimizer step {STOP_AT + 1}" in line
    assert [p.name for p in list_checkpoints(run)] == [f"checkpoint-{STOP_AT + 1}"]
    assert not (run / LOCK_FILE).exists()


@pytest.mark.slow
def test_a_step_longer_than_the_grace_period_is_abandoned_in_time(tiny_synth, tmp_path, train_args):
    run = tmp_path / "run"
    argv = train_args(tiny_synth, run, *RUN, "--save_steps", "2", "--train.signal_grace_s", "1")
    code, out, err, seconds = _run_and_signal(argv, tmp_path / "m", signal.SIGTERM, extra_sleep=30)
    assert code == 128 + signal.SIGTERM, err
    assert seconds < 15, f"{seconds:.1f} s: the watchdog did not end the step at the grace period"
    [line] = _fgclip_lines(err)
    assert "did not finish within train.signal_grace_s = 1 s" in line
    assert f"the last checkpoint is {run / 'checkpoint-2'}" in line and "--resume latest" in line
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2"]  # nothing new, the earlier one intact
    assert not (run / LOCK_FILE).exists()


def _stop_worker(rank: int, world_size: int, port: int, out_dir: str):
    """Rank 1 alone was signalled (torchrun forwards a signal to each rank at its own moment)."""
    init_gloo(rank, world_size, port)
    try:
        request = PreemptionRequest(25.0, "hint", lambda message, code: None)
        if rank == 1:
            request.signum = signal.SIGTERM
        callback, control = StopAndSave(request, torch.device("cpu")), TrainerControl()
        callback.on_step_end(None, None, control)
        first = (control.should_save, control.should_training_stop)
        request.signum = None  # nobody signalled: the next step goes on everywhere
        control = TrainerControl()
        callback.on_step_end(None, None, control)
        torch.save({"first": first, "next": (control.should_save, control.should_training_stop)},
                   os.path.join(out_dir, f"rank{rank}.pt"))  # fmt: skip
    finally:
        shutdown_gloo()


def test_two_ranks_stop_at_the_same_step_when_one_is_signalled(tmp_path):
    spawn(_stop_worker, (2, free_port(), str(tmp_path)))
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["first"] == (True, True), f"rank {rank} would not save and stop with the others"
        assert result["next"] == (False, False), f"rank {rank}"
