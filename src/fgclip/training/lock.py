"""An exclusive lock on a training output dir: one `fgclip train` writes into a folder at a time.

`OUTPUT_DIR/.fgclip.lock` is created with O_CREAT | O_EXCL (atomic, also on NFS v3+) before anything else
is written, and holds the holder's PID, host and start time as JSON. A second run (a new one, or a
`--resume` against a live run) stops at once saying who holds the lock. A lock left by a run that was
killed (same host, PID no longer alive) is stale: it is explained in one line and taken over. A lock from
another host cannot be checked from here and is never taken over; the message says how to remove it.
The lock is removed when the run ends, by an exception too; only a kill -9 leaves it behind (stale).

Known limit: a PID reused by an unrelated process after a crash makes a stale lock look live (process start
times cannot be compared reliably: the boot clock drifts from the wall clock, by tens of seconds on VMs); the
message names the PID and the start time so the user can tell, and remove the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = ".fgclip.lock"


def _refusal(message: str) -> Exception:
    """A ConfigError (a one-line `fgclip train: ...`); imported here because fgclip.config pulls in
    transformers, and this module is light on purpose (the lock is taken before anything heavy)."""
    from fgclip.config import ConfigError

    return ConfigError(message)


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    started: str  # UTC, ISO 8601
    token: str  # tells our own lock from one written by another run with a reused PID
    command: str = ""
    slurm_job: str = ""  # SLURM_JOB_ID: a requeued job keeps it, on whatever node it restarts
    slurm_restart: int = 0  # SLURM_RESTART_COUNT: grows by one per requeue

    @classmethod
    def of_this_process(cls) -> LockHolder:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return cls(
            os.getpid(), socket.gethostname(), started, uuid.uuid4().hex, " ".join(sys.argv),
            os.environ.get("SLURM_JOB_ID", ""), int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
        )  # fmt: skip

    def is_earlier_run_of(self, me: LockHolder) -> bool:
        """The same SLURM job before a requeue: SLURM restarts a job only after its earlier run ended."""
        return (
            bool(self.slurm_job) and self.slurm_job == me.slurm_job and self.slurm_restart < me.slurm_restart
        )

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, since {self.started}"

    def is_alive(self) -> bool:
        """Only meaningful on the holder's own host. A zombie (killed, not yet reaped) holds nothing."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # it runs, as another user
            return True
        return _process_state(self.pid) not in ("Z", "X")


def _process_state(pid: int) -> str | None:
    """The state letter of proc(5) (R, S, Z, ...); None where /proc is absent (not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[0]  # after "pid (comm) ": comm may hold spaces


def launch_rank() -> int:
    """This process's global rank, also before the process group exists: `train()` takes the lock before
    TrainingArguments initialises it, and torchrun (like DeepSpeed's launcher) sets RANK for every process.
    torch is not imported for this (a process that has not imported it has no process group)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


class OutputDirLock:
    """`with OutputDirLock(output_dir):` holds `output_dir/.fgclip.lock` for the block.

    Only global rank 0 takes it (it holds it for the whole job); on other ranks, and with `enabled=False`,
    it is a no-op.
    """

    def __init__(self, output_dir: str | Path, enabled: bool | None = None):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_FILE
        self.enabled = launch_rank() == 0 if enabled is None else enabled
        self.holder: LockHolder | None = None

    def __enter__(self) -> OutputDirLock:
        if self.enabled:
            self.acquire()
        return self

    def __exit__(self, *_) -> None:
        self.release()

    def acquire(self) -> None:
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise _refusal(
                f"train.output_dir {self.output_dir} is a file, not a folder: choose another --output_dir"
            )
        self.output_dir.mkdir(parents=True, exist_ok=True)
        me = LockHolder.of_this_process()
        for _ in range(3):  # a takeover can race another run's; each round either wins, or sees a live holder
            if self._create(me):
                self.holder = me
                return
            holder = self._read_holder()
            if holder is not None:  # None: released meanwhile, the next round creates it
                self._take_over_if_stale(holder, me)
        raise _refusal(f"{self.output_dir}: could not take {self.path} (other runs keep taking it); retry")

    def release(self) -> None:
        """Remove the lock if it is still ours (never another run's)."""
        if self.holder is None:
            return
        if _token_of(self.path) == self.holder.token:
            self.path.unlink(missing_ok=True)
        self.holder = None

    def _create(self, me: LockHolder) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(dataclasses.asdict(me), f)
            f.write("\n")
        return True

    def _read_holder(self) -> LockHolder | None:
        """The lock's holder; None when there is no lock file (any more)."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            raw = json.loads(text)  # bytes: not UTF-8 is a ValueError like bad JSON
            return LockHolder(
                int(raw["pid"]),
                str(raw["host"]),
                str(raw["started"]),
                str(raw["token"]),
                str(raw.get("command", "")),
                str(raw.get("slurm_job", "")),
                int(raw.get("slurm_restart", 0)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise _refusal(
                f"{self.output_dir} is locked by {self.path}, which cannot be read ({error}); if no fgclip "
                f"train uses this directory, remove it: rm {self.path}"
            ) from error

    def _take_over_if_stale(self, holder: LockHolder, me: LockHolder) -> None:
        here = socket.gethostname()
        if holder.is_earlier_run_of(me):
            if self._remove_if_unchanged(holder):
                print(
                    f"[output] {self.path}: taking over the lock of this SLURM job's run before its requeue "
                    f"({holder.describe()}, restart {holder.slurm_restart}; now restart {me.slurm_restart})",
                    flush=True,
                )
            return
        if holder.host != here:
            raise _refusal(
                f"{self.output_dir} is locked by an fgclip train on another host: {holder.describe()} "
                f"({self.path}), which cannot be checked from {here}. A run killed there (kill -9, OOM killer, "
                f"node failure) leaves this lock behind. If no fgclip train runs there any more (ssh {holder.host} "
                f"ps -p {holder.pid}), remove it and continue: rm {self.path} && fgclip train ... --resume latest; "
                "otherwise wait for it or choose another --output_dir"
            )
        if holder.is_alive():
            raise _refusal(
                f"{self.output_dir} is in use by another fgclip train: {holder.describe()} ({self.path}). "
                "Wait for it to finish, stop it, or choose another --output_dir"
            )
        if self._remove_if_unchanged(holder):
            print(
                f"[output] {self.path}: taking over a stale lock ({holder.describe()}; that process is no "
                "longer running: killed, or the machine restarted)",
                flush=True,
            )

    def _remove_if_unchanged(self, stale: LockHolder) -> bool:
        """Remove the stale lock, unless another run replaced it since we read it (then put that one back)."""
        aside = self.path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)  # atomic: of several runs taking over, one moves the stale file
        except FileNotFoundError:
            return False
        if _token_of(aside) == stale.token:
            aside.unlink()
            return True
        try:  # we moved a fresh lock another run had just taken: put it back
            os.link(aside, self.path)
        except FileExistsError as error:
            raise _refusal(
                f"{self.output_dir}: several runs are taking over a stale lock at once; retry one of them"
            ) from error
        finally:
            aside.unlink()
        return False


def _token_of(path: Path) -> str | None:
    """The token of a lock file; None when it is gone or unreadable (then it is not the lock we wrote)."""
    try:
        return json.loads(path.read_text()).get("token")
    except (FileNotFoundError, ValueError, AttributeError):
        return None
