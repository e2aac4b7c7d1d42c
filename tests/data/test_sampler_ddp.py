"""The balanced sampler through the real HF Trainer: 2 `gloo` processes under torchrun, and a resume mid-epoch.

What is checked is what the Trainer actually feeds each rank (its `get_train_dataloader`, i.e. accelerate's
`BatchSamplerShard` around our sampler), not what the sampler yields on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

from fgclip.data.sampler import BalancedBatchSampler
from fgclip.training.callbacks import SamplerEpochCallback

SRC = str(Path(__file__).resolve().parents[2] / "src")
LABELS = [0] * 14 + [1] * 6  # 14 normal, 6 abnormal clips
BATCH = 4

RANK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    import torch.distributed as dist
    from torch.utils.data import Dataset
    from transformers import TrainingArguments
    from fgclip.data.sampler import BalancedBatchSampler
    from fgclip.training.trainer import FGCLIPTrainer

    labels, batch, out = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

    class Indices(Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return i

    args = TrainingArguments(output_dir=out + "_run", per_device_train_batch_size=batch, use_cpu=True,
                             report_to=[], remove_unused_columns=False)
    sampler = BalancedBatchSampler(labels, batch, seed=0, world_size=args.world_size)
    trainer = FGCLIPTrainer(model=torch.nn.Linear(1, 1), args=args, train_dataset=Indices(),
                            data_collator=lambda items: {"index": torch.tensor(items)},
                            objective=None, step_report=None, group_rates=None, train_sampler=sampler)
    loader = trainer.get_train_dataloader()
    epochs = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        epochs.append([b["index"].tolist() for b in loader])
    # What the Trainer does when it resumes 2 batches into epoch 1: a skip_first_batches copy of the loader,
    # then set_epoch on it (and on its batch_sampler.batch_sampler) -- with and without SamplerEpochCallback.
    from accelerate import skip_first_batches
    from fgclip.training.callbacks import SamplerEpochCallback
    from types import SimpleNamespace

    resumed = {}
    for with_callback in (False, True):
        sampler.set_epoch(0)  # a fresh process
        skipped = skip_first_batches(loader, 2)
        if with_callback:
            SamplerEpochCallback(sampler).on_epoch_begin(args, SimpleNamespace(epoch=1 + 2 / 4), None)
        skipped.set_epoch(1)
        inner = getattr(getattr(skipped, "batch_sampler", None), "batch_sampler", None)
        if hasattr(inner, "set_epoch"):
            inner.set_epoch(1)
        resumed[str(with_callback)] = [b["index"].tolist() for b in skipped]
    gathered = [None] * args.world_size
    report = {"rank": args.process_index, "backend": dist.get_backend(), "epochs": epochs, "resumed": resumed}
    dist.all_gather_object(gathered, report)
    if args.process_index == 0:
        with open(out, "w") as handle:
            json.dump(gathered, handle)
    dist.barrier()
    dist.destroy_process_group()
    """
)


@pytest.mark.slow  # two processes importing torch + transformers: ~15-20 s on the 2-core box
def test_two_gloo_ranks_get_disjoint_balanced_batches(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "batches.json"
    env = {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        command + [str(script), json.dumps(LABELS), str(BATCH), str(out)],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = sorted(json.loads(out.read_text()), key=lambda r: r["rank"])
    assert [r["backend"] for r in ranks] == ["gloo", "gloo"]
    for epoch in range(2):
        per_rank = [r["epochs"][epoch] for r in ranks]
        assert (
            len(per_rank[0]) == len(per_rank[1]) == 4
        )  # 14 normal / 2 per batch -> 7 -> 8 batches, 4 per rank
        for step, (a, b) in enumerate(zip(*per_rank, strict=True)):
            assert len(a) == len(b) == BATCH
            assert not set(a) & set(b), f"epoch {epoch} step {step}: ranks share clips {a} {b}"
            for batch in (a, b):
                assert sorted(LABELS[i] for i in batch) == [0, 0, 1, 1], batch
        normal = {i for batches in per_rank for batch in batches for i in batch if LABELS[i] == 0}
        assert normal == set(range(14))  # every normal clip seen in the epoch
    assert ranks[0]["epochs"][0] != ranks[0]["epochs"][1]  # epochs reshuffle
    for rank in ranks:
        assert rank["resumed"]["True"] == rank["epochs"][1][2:]  # the resumed epoch replays its batches
        # Without the callback, set_epoch does not reach the sampler through the skip loader's extra wrapper
        # under DDP: the resumed epoch would replay epoch 0's order. (If accelerate ever forwards it, this
        # fails and the callback becomes a harmless duplicate.)
        assert rank["resumed"]["False"] == rank["epochs"][0][2:]


class _Indices(Dataset):
    def __len__(self):
        return len(LABELS)

    def __getitem__(self, i):
        return i


class _Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))

    def forward(self, index):
        return {"loss": (self.weight * index.float()).mean()}


class _Record(TrainerCallback):
    def __init__(self):
        self.batches: list[list[int]] = []


class _Trainer(Trainer):
    """Like FGCLIPTrainer: the sampler comes from outside; each batch is recorded with its global step."""

    def __init__(self, *args, sampler, record, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampler, self.record = sampler, record

    def _get_train_sampler(self, train_dataset=None):
        return self.sampler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.record.batches.append((self.state.global_step, inputs["index"].tolist()))
        return model(**inputs)["loss"]


def _train(out: Path, max_steps: int, resume: str | None = None) -> list:
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=BATCH, max_steps=max_steps, save_steps=10,
        use_cpu=True, report_to=[], remove_unused_columns=False, disable_tqdm=True, logging_strategy="no",
    )  # fmt: skip
    sampler = BalancedBatchSampler(LABELS, BATCH, seed=0)
    record = _Record()
    trainer = _Trainer(
        model=_Scale(), args=args, train_dataset=_Indices(),
        data_collator=lambda items: {"index": torch.tensor(items)}, sampler=sampler, record=record,
    )  # fmt: skip
    trainer.add_callback(SamplerEpochCallback(sampler))
    trainer.train(resume_from_checkpoint=resume)
    return record.batches


def test_resume_mid_epoch_replays_the_same_batches(tmp_path):
    # 7 batches per epoch; the checkpoint at step 10 is 3 batches into the second epoch.
    full = _train(tmp_path / "run", max_steps=14)
    assert [step for step, _ in full] == list(range(14))
    checkpoint = str(tmp_path / "run" / "checkpoint-10")
    assert _train(tmp_path / "run", max_steps=14, resume=checkpoint) == full[10:]
