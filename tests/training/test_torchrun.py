"""`torchrun --nproc_per_node 2 -m fgclip.cli train ...` on CPU (gloo): DDP end to end on the tiny synthetic set.

Rank 0 alone writes metrics.jsonl (each step once); the memory bank is identical on both ranks (each rank's
digest is recorded in every checkpoint, and equals the digest of the bank saved in it); every step writes
the rows of both ranks into the bank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from fgclip.losses.memory_bank import RegionMemoryBank
from fgclip.training.trainer import BANK_DIGEST_FILE, bank_digest


def test_two_process_ddp_training_through_torchrun(tiny_synth, tmp_path, train_args, read_rows):
    run = tmp_path / "run"
    argv = train_args(
        tiny_synth, run, "--max_steps", "4", "--per_device_batch_size", "2", "--save_steps", "2",
        "--save_total_limit", "3", "--bank.size", "8", "--bank.warmup_steps", "1",
    )  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, "-m", "fgclip.cli", *argv],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    assert [r["step"] for r in read_rows(run)] == [1, 2, 3, 4]  # rank 0 only, once per step
    assert done.stdout.count("step 4/4 |") == 1
    assert done.stdout.count("trained 4 optimizer steps") == 1
    assert (run / "model" / "model.safetensors").is_file() and not (run / ".staging").exists()
    # the region loss contrasts the gathered batch: 2 clips x 1 region on each of the 2 ranks
    assert read_rows(run)[0]["region/queries"] == 4.0

    for step in (2, 4):
        checkpoint = run / f"checkpoint-{step}"
        digests = json.loads((checkpoint / BANK_DIGEST_FILE).read_text())["digests"]
        state = load_file(checkpoint / "model.safetensors")
        bank = RegionMemoryBank(state["memory_bank.image_embeds"].shape[1], capacity=8)
        bank.load_state_dict(
            {k.removeprefix("memory_bank."): v for k, v in state.items() if "memory_bank." in k}
        )
        assert digests == [bank_digest(bank)] * 2, (
            f"checkpoint-{step}: ranks' banks differ from the saved one"
        )
    assert bool(bank.enabled) and bank.filled() == 8
    assert int((bank.steps == 3).sum()) == 4  # the last step wrote 2 rows from each rank
    assert torch.isfinite(bank.image_embeds).all()
