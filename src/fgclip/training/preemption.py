"""Preemption: SIGTERM, SIGUSR1 or SIGINT stop a run at the end of the current optimizer step with a checkpoint.

Clusters stop jobs with a signal and a grace period before SIGKILL: SLURM sends SIGTERM at the time limit or on
preemption (and SIGUSR1 ahead of it with `--signal=B:USR1@120`), Kubernetes SIGTERM with 30 s grace. On the
first signal the handler only records it (`PreemptionRequest`); `StopAndSave`, a Trainer callback, then asks
the HF Trainer itself to save and stop at the end of the step (`control.should_save`,
`control.should_training_stop`), so the checkpoint is an ordinary one (weights, optimizer, scheduler, bank,
RNG, sampler position, `trainer_state.json`) written through the staging folder, and `--resume latest`
continues bit-exactly. Under torchrun every rank gets the signal at a slightly different moment: the ranks
agree on "stop after this step" with one all-reduce per step, so they all save the same step.

Bounded time: a watchdog started with the first signal ends the process `grace_s` seconds later if the step
and the save have not finished by then (a step slower than the grace period, a save on a slow disk). It
releases the output lock, prints one line naming the last complete checkpoint, and exits; a partial save is
left under `.staging`, which the next start removes. A second signal stops at once the same way. During
start-up (before the first step) a signal stops at once too: nothing has been trained that could be saved.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

from fgclip.distributed import all_reduce_sum, get_world_size_and_rank

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Preempted(RuntimeError):
    """The run stopped on a signal; the message says what was saved and how to continue. `exit_code` follows
    the shell's 128 + signal number (143 for SIGTERM), so a job script can tell it from a failure."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


@dataclass
class PreemptionRequest:
    """What the handler recorded; read by the callback at each step end and by `train` afterwards."""

    grace_s: float
    resume_hint: str  # "fgclip train CONFIG --resume latest"
    on_deadline: Callable[[str, int], None]  # prints the line, releases the lock, exits with the code
    signum: int | None = None
    received_at: float | None = None
    phase: str = "start-up"  # "training": stop at a step end; otherwise (start-up, the final save) at once
    last_checkpoint: Callable[[], str] = field(default=lambda: "no checkpoint yet")
    _watchdog: threading.Timer | None = None
    owner_pid: int = field(default_factory=os.getpid)  # the training process (not its forked loader workers)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def handle(self, signum: int, frame) -> None:
        if os.getpid() != self.owner_pid:  # a DataLoader worker forked with this handler: the trainer decides
            if signum == signal.SIGTERM:  # the loader's own shutdown (terminate) must still end the worker
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return  # SIGINT (Ctrl-C reaches the whole process group) / SIGUSR1: the worker keeps serving
        if self.requested:
            self._stop_now(f"{signal_name(signum)} (a second signal)")
        self.signum, self.received_at = signum, time.monotonic()
        if self.phase != "training":
            self._stop_now(f"{signal_name(signum)} during {self.phase}")
        self._watchdog = threading.Timer(self.grace_s, self._deadline)
        self._watchdog.daemon = True
        self._watchdog.start()  # nothing is printed here: a print inside a print of the main thread fails

    def _stop_now(self, why: str) -> None:
        """From the handler, in the main thread: raise out of whatever runs (the lock is released on the way)."""
        self.cancel()
        raise Preempted(
            f"stopped by {why}: nothing new saved ({self.last_checkpoint()}); {self.resume_hint}",
            self.signum or signal.SIGTERM,
        )

    def _deadline(self) -> None:
        """Watchdog thread: the step or the save outlasted the grace period."""
        self.on_deadline(
            f"stopped by {signal_name(self.signum)}: the step and its checkpoint did not finish within "
            f"train.signal_grace_s = {self.grace_s:g} s, so nothing new was saved ({self.last_checkpoint()}; a "
            f"partial save under .staging is removed at the next start); {self.resume_hint}",
            128 + self.signum,
        )

    def cancel(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


class handling_stop_signals:
    """`with handling_stop_signals(request):` routes SIGTERM / SIGUSR1 / SIGINT to `request` for the block and
    restores the previous handlers after it (a test calls `main()` in its own process)."""

    def __init__(self, request: PreemptionRequest):
        self.request = request
        self.previous: dict[int, object] = {}

    def __enter__(self) -> PreemptionRequest:
        if threading.current_thread() is threading.main_thread():  # only there can handlers be installed
            for signum in STOP_SIGNALS:
                self.previous[signum] = signal.signal(signum, self.request.handle)
        return self.request

    def __exit__(self, *_) -> None:
        self.request.cancel()
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class StopAndSave(TrainerCallback):
    """At each optimizer step end: if any rank was signalled, have the Trainer save this step and stop."""

    def __init__(self, request: PreemptionRequest, device: torch.device):
        self.request = request
        self.device = device

    def on_train_begin(self, args, state, control, **kwargs):
        self.request.phase = "training"

    def on_step_end(self, args, state, control, **kwargs):
        if self._any_rank_signalled():
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.request.phase = "the final save"

    def _any_rank_signalled(self) -> bool:
        world_size, _ = get_world_size_and_rank()
        if world_size == 1:
            return self.request.requested
        flag = torch.tensor([float(self.request.requested)], device=self.device)
        return bool(all_reduce_sum(flag).item() > 0)  # every rank decides alike: same step, same save


def exit_at_deadline(
    release_lock: Callable[[], None], command: str = "fgclip train"
) -> Callable[[str, int], None]:
    """What the watchdog does: one line, the lock released, exit 128 + signal (no cleanup that could hang)."""

    def deadline(message: str, code: int) -> None:
        try:
            release_lock()
        finally:
            print(f"{command}: {message}", file=sys.stderr, flush=True)
            os._exit(code)

    return deadline


def describe_checkpoint(output_dir: Path) -> Callable[[], str]:
    """'the last checkpoint is OUT/checkpoint-N', read when the message is built."""

    def describe() -> str:
        from fgclip.training.checkpoints import list_checkpoints  # light import at signal time

        complete = [p for p in list_checkpoints(output_dir) if (p / "trainer_state.json").is_file()]
        return (
            f"the last checkpoint is {complete[-1]}" if complete else f"{output_dir} holds no checkpoint yet"
        )

    return describe
