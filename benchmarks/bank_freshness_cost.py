"""What do fresh text negatives and the momentum encoder cost per training step? One run, interleaved.

The demo's tiny CLIP (`fgclip demo`'s model section) at the original system's per-device batch (4 clips,
1 region each, 4 frames, 3 hard negatives), a full bank of 128 entries, one optimizer step per call
(task forward, backward, SGD step). Settings: bank off; a stale bank (today); bank.fresh_text 32 / 128
(the newest N banked captions re-encoded with gradient); bank.momentum 0.99 (the banked image rows from an
EMA copy of the vision tower: one extra no-grad image forward and an EMA update per step); both.
Reported: median s/step and the ratio to the stale bank, measured in the same run.

    python benchmarks/bank_freshness_cost.py [--repeats 15] [--batch 4] [--regions 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from step_overhead import make_batch

from fgclip import builders
from fgclip.config import load_config
from fgclip.configs import demo_config_path
from fgclip.losses.memory_bank import MemoryBankOptions
from fgclip.losses.objective import FGCLIPObjective
from fgclip.losses.task import AlignmentTask

BANK = 128
SETTINGS = {
    "bank off": MemoryBankOptions(size=0),
    "stale bank 128 (today)": MemoryBankOptions(size=BANK, warmup_steps=0),
    "fresh_text 32": MemoryBankOptions(size=BANK, warmup_steps=0, fresh_text=32),
    "fresh_text 128": MemoryBankOptions(size=BANK, warmup_steps=0, fresh_text=128),
    "momentum 0.99": MemoryBankOptions(size=BANK, warmup_steps=0, momentum=0.99),
    "fresh_text 32 + momentum 0.99": MemoryBankOptions(
        size=BANK, warmup_steps=0, fresh_text=32, momentum=0.99
    ),
}


def demo_model():
    config = load_config(demo_config_path(), [])
    torch.manual_seed(0)
    model, _ = builders.build_model(config.model, builders.build_tokenizer(config.model))
    return model.train()


class Run:
    """One setting: its own model copy, task, full bank and optimizer, stepping on the same batch."""

    def __init__(self, options: MemoryBankOptions, batch: dict, caption_length: int):
        self.model = demo_model()
        self.task = AlignmentTask(FGCLIPObjective({}), options)
        self.task.attach_bank(self.model)
        if self.task.bank is not None:
            self._fill(self.task.bank, caption_length)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-4)
        self.batch, self.step = batch, 1

    def _fill(self, bank, caption_length: int) -> None:
        generator = torch.Generator().manual_seed(1)
        dim = bank.image_embeds.shape[1]
        image, text = (F.normalize(torch.randn(BANK, dim, generator=generator), dim=-1) for _ in range(2))
        keys, labels = torch.arange(10_000, 10_000 + BANK), torch.zeros(BANK, dtype=torch.long)
        extra = {}
        if bank.stores_text:
            vocab = self.model.config.text_config.vocab_size
            ids = torch.randint(4, vocab, (BANK, bank.text_length), generator=generator)
            ids[:, caption_length:] = 0
            ids[:, caption_length - 1] = 1  # EOS
            extra = {
                "caption_ids": ids,
                "caption_mask": (torch.arange(bank.text_length) < caption_length).long(),
            }
            extra["caption_mask"] = extra["caption_mask"].expand(BANK, -1).contiguous()
        bank.write(image, text, keys, labels, step=0, **extra)

    def __call__(self) -> float:
        start = time.perf_counter()
        loss = self.task(self.model, self.batch, self.step).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--regions", type=int, default=1)
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    caption_length = 16
    vocab = demo_model().config.text_config.vocab_size
    batch = make_batch(
        args.batch, args.frames, args.regions, 3, caption_length, 64, vocab, torch.Generator().manual_seed(0)
    )
    runs = {name: Run(options, batch, caption_length) for name, options in SETTINGS.items()}
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved, so machine noise hits every setting alike
        for name, run in runs.items():
            times[name].append(run())
    median = {name: statistics.median(values) for name, values in times.items()}
    base = median["stale bank 128 (today)"]
    print(
        f"demo tiny CLIP, batch {args.batch} clips x {args.frames} frames x {args.regions} region(s), bank {BANK} "
        f"full, {torch.get_num_threads()} thread(s), median of {args.repeats} steps (task + backward + SGD)"
    )
    print(f"{'setting':<32} {'s/step':>8} {'vs stale bank':>14}")
    for name, value in median.items():
        print(f"{name:<32} {value:8.4f} {value / base:13.2f}x")


if __name__ == "__main__":
    main()
