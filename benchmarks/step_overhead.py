"""What does fine-grained training cost over plain CLIP? One full fgclip training step vs a plain HF CLIPModel
forward+backward on the same frames and the same captions, same tiny config, in one run.

fgclip's step: B clips x T frames encoded once; clip embeddings through the temporal module; dense features
from the last layer's value path; RoIAlign for every (frame, region) pair on those same dense features (no
crop is re-encoded); global, region and hard-negative captions; the three losses; backward.
Baseline: `CLIPModel(pixel_values=<the B*T frames>, input_ids=<all the same captions>)`, a contrastive-style
loss on its logits, backward.

    python benchmarks/step_overhead.py [--repeats 7] [--vision-width 128] [--image-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import CLIPConfig, CLIPModel

from fgclip.losses.memory_bank import MemoryBankOptions
from fgclip.losses.objective import FGCLIPObjective
from fgclip.losses.task import AlignmentTask
from fgclip.model.configuration import tiny_config
from fgclip.model.modeling import FGCLIPModel


def make_batch(B: int, T: int, R: int, K: int, L: int, size: int, vocab: int, generator) -> dict:
    def ids(*shape):
        body = torch.randint(4, vocab, (*shape, L - 2), generator=generator)
        return torch.cat(
            [torch.zeros(*shape, 1, dtype=torch.long), body, torch.ones(*shape, 1, dtype=torch.long)], -1
        )

    corners = torch.rand(B, 1, R, 2, generator=generator) * 0.5
    boxes = torch.cat([corners, corners + 0.3 + 0.2 * torch.rand(B, 1, R, 2, generator=generator)], -1)
    return {
        "pixel_values": torch.randn(B, T, 3, size, size, generator=generator),
        "frame_mask": torch.ones(B, T, dtype=torch.bool),
        "caption_ids": ids(B),
        "caption_mask": torch.ones(B, L, dtype=torch.long),
        "caption_keys": torch.arange(B),
        "region_boxes": boxes.expand(B, T, R, 4).clamp(0, 1).contiguous(),
        "region_box_mask": torch.ones(B, T, R, dtype=torch.bool),
        "region_valid": torch.ones(B, R, dtype=torch.bool),
        "region_caption_ids": ids(B, R),
        "region_caption_mask": torch.ones(B, R, L, dtype=torch.long),
        "region_labels": torch.zeros(B, R, dtype=torch.long),
        "region_caption_keys": torch.arange(B * R).view(B, R),
        "hard_negative_ids": ids(B, R, K),
        "hard_negative_mask": torch.ones(B, R, K, L, dtype=torch.long),
    }


def fgclip_step(model: FGCLIPModel, task: AlignmentTask, batch: dict) -> None:
    task(model, batch, step=0).loss.backward()  # the trainer's compute_loss, bank off


def clip_step(model: CLIPModel, frames: torch.Tensor, texts: torch.Tensor) -> None:
    out = model(pixel_values=frames, input_ids=texts)
    logits = out.logits_per_image  # (B*T, N_texts)
    # A contrastive-shaped loss over every logit (the pairing does not matter for timing).
    (logits.logsumexp(1).mean() + logits.logsumexp(0).mean() - 2 * logits.mean()).backward()


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--hard-negatives", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--vision-width", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    config = tiny_config(vocab_size=100, image_size=args.image_size, vision_width=args.vision_width)
    ours = FGCLIPModel(config).train()
    plain = CLIPModel(
        CLIPConfig(
            text_config=config.text_config.to_dict(),
            vision_config=config.vision_config.to_dict(),
            projection_dim=config.projection_dim,
        )
    ).train()
    B, T, R, K = args.batch, args.frames, args.regions, args.hard_negatives
    batch = make_batch(B, T, R, K, 16, args.image_size, 100, generator)
    frames = batch["pixel_values"].flatten(0, 1)  # (B*T, 3, H, W): the same frames
    texts = torch.cat(
        [
            batch["caption_ids"],
            batch["region_caption_ids"].flatten(0, 1),
            batch["hard_negative_ids"].flatten(0, 2),
        ]
    )  # the same captions
    task = AlignmentTask(FGCLIPObjective({}), MemoryBankOptions(size=0))
    step_ours = lambda: fgclip_step(ours, task, batch)  # noqa: E731
    step_plain = lambda: clip_step(plain, frames, texts)  # noqa: E731
    step_ours(), step_plain()  # warm-up
    # Interleaved, so machine noise hits both alike.
    ours_times, plain_times = [], []
    for _ in range(args.repeats):
        ours_times.append(seconds(step_ours))
        plain_times.append(seconds(step_plain))
        ours.zero_grad(set_to_none=True)
        plain.zero_grad(set_to_none=True)
    t_ours, t_plain = statistics.median(ours_times), statistics.median(plain_times)
    rows = [("HF CLIPModel fwd+bwd (baseline)", t_plain), ("fgclip full step", t_ours)]
    print(
        f"B={B} clips x T={T} frames ({B * T} frames of {args.image_size}px), R={R} regions, K={K} hard negatives, "
        f"{texts.shape[0]} captions; tiny CLIP (vision width {args.vision_width}); {torch.get_num_threads()} threads; "
        f"median of {args.repeats}"
    )
    for name, value in rows:
        print(f"{name:<36} {value * 1000:8.1f} ms")
    print(f"ratio fgclip / plain CLIP: {t_ours / t_plain:.2f}x")


if __name__ == "__main__":
    main()
