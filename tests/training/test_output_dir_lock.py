"""One `fgclip train` per output dir: a live holder stops a second run (new or `--resume`) at once, naming
its pid; a stale lock (dead pid, same host) is explained and taken over; another host's lock never is."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import TrainerCallback

from fgclip.cli import main
from fgclip.config import ConfigError, load_config
from fgclip.tools import training_run as run
from fgclip.training.lock import LOCK_FILE, OutputDirLock

SRC = str(Path(__file__).resolve().parents[2] / "src")
HOLDER = """
import sys, time
from fgclip.training.lock import OutputDirLock
with OutputDirLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""
TINY = ("--max_steps", "2", "--per_device_batch_size", "3", "--save_steps", "2")


@pytest.fixture
def holder():
    """Start a process that holds the lock of a directory; killed (by its pid) at the end."""
    started: list[subprocess.Popen] = []

    def start(output_dir: Path) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        child = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(output_dir)], stdout=subprocess.PIPE, text=True, env=env
        )
        started.append(child)
        assert child.stdout.readline().strip() == "locked"
        return child

    yield start
    for child in started:
        child.kill()
        child.wait(timeout=30)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid no longer exists
    return child.pid


def test_second_run_stops_at_once_naming_the_holder(tiny_synth, tmp_path, train_args, holder, capsys):
    out = tmp_path / "run"
    held = holder(out)
    started = time.monotonic()
    assert main(train_args(tiny_synth, out, *TINY)) == 1
    assert time.monotonic() - started < 5  # refused before the model or the data are built
    err = capsys.readouterr().err
    assert err.startswith(f"fgclip train: {out} is in use by another fgclip train: pid {held.pid} on host ")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing else was written
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == held.pid  # the holder's lock is untouched


def test_resume_against_a_live_run_is_refused(tiny_synth, tmp_path, train_args, holder, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_synth, out, *TINY)) == 0
    assert not (out / LOCK_FILE).exists()  # released at the end of the run
    rows = (out / "metrics.jsonl").read_text()
    held = holder(out)
    capsys.readouterr()
    assert main(train_args(tiny_synth, out, *TINY[2:], "--max_steps", "4", "--resume", "latest")) == 1
    assert f"in use by another fgclip train: pid {held.pid}" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == rows and not (out / "checkpoint-4").exists()


class LockWatcher(TrainerCallback):
    def __init__(self, path: Path):
        self.path, self.seen = path, []

    def on_step_begin(self, args, state, control, **kwargs):
        self.seen.append(json.loads(self.path.read_text()))


def test_stale_lock_is_explained_and_taken_over(tiny_synth, tmp_path, train_args, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = _dead_pid()
    stale = {"pid": dead, "host": socket.gethostname(), "started": "2026-01-01T00:00:00Z", "token": "x"}
    (out / LOCK_FILE).write_text(json.dumps(stale))
    argv = train_args(tiny_synth, out, *TINY)
    watcher = LockWatcher(out / LOCK_FILE)
    run.train(load_config(argv[1], argv[2:]), callbacks=[watcher])
    stdout = capsys.readouterr().out
    lines = [line for line in stdout.splitlines() if "stale lock" in line]
    assert lines == [
        f"[output] {out / LOCK_FILE}: taking over a stale lock (pid {dead} on host {socket.gethostname()}, "
        "since 2026-01-01T00:00:00Z; that process is no longer running: killed, or the machine restarted)"
    ]
    assert [s["pid"] for s in watcher.seen] == [os.getpid(), os.getpid()]  # held by this run while it trains
    assert (out / "model").is_dir() and not (out / LOCK_FILE).exists()


def test_another_hosts_lock_is_never_taken_over(tmp_path):
    lock = {"pid": os.getpid(), "host": "gpu-node-17", "started": "2026-01-01T00:00:00Z", "token": "x"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(lock))
    with pytest.raises(ConfigError) as error:
        OutputDirLock(tmp_path).acquire()
    message = str(error.value)
    assert "pid" in message and "on host gpu-node-17, since 2026-01-01T00:00:00Z" in message
    assert f"rm {tmp_path / LOCK_FILE} && fgclip train ... --resume latest" in message
    assert "ssh gpu-node-17 ps -p" in message and "kill -9" in message
    assert json.loads((tmp_path / LOCK_FILE).read_text()) == lock


def test_a_requeued_slurm_job_takes_over_its_own_earlier_lock(tmp_path, monkeypatch, capsys):
    """SLURM restarts a requeued job (same SLURM_JOB_ID, SLURM_RESTART_COUNT + 1) only after the earlier run
    ended, on any node: that run's lock (left by a SIGKILL) is stale by construction."""
    earlier = {"pid": 4242, "host": "gpu-node-17", "started": "2026-01-01T00:00:00Z", "token": "x",
               "slurm_job": "991", "slurm_restart": 0}  # fmt: skip
    (tmp_path / LOCK_FILE).write_text(json.dumps(earlier))
    monkeypatch.setenv("SLURM_JOB_ID", "991")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with OutputDirLock(tmp_path) as lock:
        held = json.loads(lock.path.read_text())
        assert (held["pid"], held["slurm_job"], held["slurm_restart"]) == (os.getpid(), "991", 1)
    assert "lock of this SLURM job's run before its requeue" in capsys.readouterr().out
    for other_job in ({**earlier, "slurm_job": "990"}, {**earlier, "slurm_restart": 1}):
        (tmp_path / LOCK_FILE).write_text(json.dumps(other_job))  # another job, or a live run of this one
        with pytest.raises(ConfigError, match="on another host"):
            OutputDirLock(tmp_path).acquire()


@pytest.mark.parametrize(
    "content", [b"", b"{not json", b"[1, 2]", b'{"pid": "x"}', b"\xff\xfe\x00", b"9" * 5000]
)
def test_a_damaged_lock_file_is_one_line_with_the_way_out(tmp_path, content):
    (tmp_path / LOCK_FILE).write_bytes(content)
    with pytest.raises(ConfigError) as error:
        OutputDirLock(tmp_path).acquire()
    assert "cannot be read" in str(error.value) and f"rm {tmp_path / LOCK_FILE}" in str(error.value)


def test_lock_is_released_on_an_exception_and_only_if_ours(tmp_path):
    with pytest.raises(RuntimeError), OutputDirLock(tmp_path / "new" / "dir") as lock:
        held = json.loads(lock.path.read_text())
        assert (held["pid"], held["host"]) == (os.getpid(), socket.gethostname())
        raise RuntimeError("training failed")
    assert not lock.path.exists()

    with OutputDirLock(tmp_path) as lock:
        lock.path.write_text(json.dumps({**json.loads(lock.path.read_text()), "token": "another run"}))
    assert lock.path.exists()  # someone else's lock (it replaced ours) is left alone


def test_only_rank_zero_takes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # torchrun's, before the process group exists
    with OutputDirLock(tmp_path) as lock:
        assert not lock.path.exists()
    monkeypatch.setenv("RANK", "0")
    with OutputDirLock(tmp_path) as lock:
        assert lock.path.exists()


def test_train_refuses_before_resolving_the_resume(tmp_path, holder):
    """The holder is named even when the resume target is wrong: the lock comes first."""
    held = holder(tmp_path)
    config = load_config(None, ["--train.output_dir", str(tmp_path), "--resume", "latest"])
    with pytest.raises(ConfigError, match=f"pid {held.pid}"):
        run.train(config)
