"""Two-process gloo runs on CPU, with a deadline and a teardown that cannot deadlock.

torch's gloo backend can deadlock at teardown: a run-loop thread that releases a finished all-gather needs the
GIL to drop its Python tensors, while the main thread, holding the GIL, waits in the process group's destructor
for that thread's lock. A barrier before `destroy_process_group` lets the run loop finish first (the barrier
releases the GIL while it waits). The deadline turns any other hang into a test failure instead of a stuck CI.
"""

from __future__ import annotations

import os
import socket
import time

import torch.distributed as dist
import torch.multiprocessing as mp

DEADLINE_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_gloo(rank: int, world_size: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)


def shutdown_gloo() -> None:
    dist.barrier()
    dist.destroy_process_group()


def spawn(worker, args: tuple, nprocs: int = 2, deadline_s: float = DEADLINE_S) -> None:
    """mp.spawn(worker, args, nprocs), failing (and killing the workers) after `deadline_s`."""
    context = mp.start_processes(worker, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + deadline_s
    # join returns after each worker's exit (False while others run) and re-raises a worker's exception
    while not context.join(timeout=max(deadline - time.monotonic(), 0)):
        if time.monotonic() >= deadline:
            for process in context.processes:
                process.kill()
            raise TimeoutError(f"{nprocs} gloo workers still running after {deadline_s} s")
