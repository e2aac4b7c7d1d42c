"""The real-size training step: ViT-B/16 from the released FG-CLIP base config (random weights), real captions
tokenized by the real CLIP BPE tokenizer, against plain HF `CLIPModel` forward + backward on the same frames
and captions, with and without gradient checkpointing, in one run.

fgclip's step: B clips x T frames at 224 px encoded once (the last layer also gives the dense value-path
features); clip embeddings through the temporal module; RoIAlign of R regions on every frame; global captions
on the long (248) table, region captions and K hard negatives per region on the 77 table; the three losses;
backward. Baseline: `CLIPModel(pixel_values=<the B*T frames>, input_ids=<all the same captions>)`, a
contrastive-shaped loss on its logits, backward. `--variants` picks the steps (plain, fgclip, plain-ckpt,
fgclip-ckpt: with gradient checkpointing); each round runs them back to back in that order (interleaved, so
machine drift hits all alike). Reported: medians over rounds, and each step's CPU-time ratio to plain paired
round by round (median and range).

Peak RSS per variant, in one process: a 2 ms sampling thread reads /proc/self/statm during the step; the
figure is its peak minus the resident set just before the step, after `malloc_trim` (the step's own
activations and gradients; the weights, shared by all variants, are not counted). `ru_maxrss` cannot do this:
it is per process and never goes down.

    OMP_NUM_THREADS=1 python benchmarks/real_size_step.py --repeats 3 --warmup 0 \
        --variants plain,fgclip,fgclip-ckpt [--base ../shared/data/real/fgclip_base] [--profile N]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import threading
import time
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel

from fgclip.data.collate import ClipCollator
from fgclip.data.text import CaptionTokenizer, load_tokenizer
from fgclip.losses.objective import FGCLIPObjective
from fgclip.model.loading import build_from_config
from fgclip.model.modeling import FGCLIPModel
from fgclip.model.regions import pool_region_features

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = next(
    (p / "shared" / "data" / "real" for p in REPO.parents if (p / "shared" / "data" / "real").is_dir()),
    REPO.parent / "shared" / "data" / "real",
)
LIBC = ctypes.CDLL("libc.so.6")
COLOURS = ("white", "black", "red", "blue", "green", "yellow", "grey", "brown")


# ------------------------------------------------------------------------------------------------- inputs
def real_captions(clip_list: Path, count: int) -> tuple[list[str], list[str]]:
    """Global and region captions of the first abnormal entries of the real clip list (cycled if short)."""
    entries = [e for e in json.loads(clip_list.read_text()) if e.get("region_captions")]
    globals_ = [e["global_caption"] for e in entries[:count]]
    regions = [caption for e in entries for caption in e["region_captions"]]
    return globals_, regions


def hard_negatives(caption: str, count: int) -> list[str]:
    """`count` one-word variants of a caption (its first colour swapped, else one appended): hard-negative shape."""
    words = caption.split()
    spot = next((i for i, w in enumerate(words) if w.lower() in COLOURS), None)
    first = COLOURS.index(words[spot].lower()) + 1 if spot is not None else 0
    variants = []
    for k in range(count):
        colour = COLOURS[(first + k) % len(COLOURS)]
        variants.append(
            " ".join(words[:spot] + [colour] + words[spot + 1 :])
            if spot is not None
            else f"{caption} {colour}"
        )
    return variants


def make_batch(
    tokenizer, globals_, regions, B: int, T: int, R: int, K: int, size: int, seed: int = 0
) -> dict:
    """A collated fgclip batch: random pixels (timing does not depend on them), the captions given, random boxes."""
    generator = torch.Generator().manual_seed(seed)
    captions = CaptionTokenizer(tokenizer, 77)
    items = []
    for b in range(B):
        region_texts = [regions[(b * R + r) % len(regions)] for r in range(R)]
        corners = torch.rand(R, 2, generator=generator) * 0.5
        boxes = torch.cat([corners, corners + 0.3 + 0.2 * torch.rand(R, 2, generator=generator)], -1).clamp(
            0, 1
        )
        items.append(
            {
                "pixel_values": torch.randn(T, 3, size, size, generator=generator),
                "caption_ids": captions([globals_[b % len(globals_)]], 248)[0],
                "caption_key": b,
                "region_caption_ids": captions(region_texts),
                "hard_negative_ids": [captions(hard_negatives(text, K)) for text in region_texts],
                "region_boxes": boxes.expand(T, R, 4).contiguous(),
                "region_box_mask": torch.ones(T, R, dtype=torch.bool),
                "region_labels": [1] * R,
                "region_caption_keys": list(range(b * R, (b + 1) * R)),
                "clip_label": 1,
                "clip_class": -1,
                "dropped_regions": 0,
                "sample_id": f"bench:{b}",
            }
        )
    return ClipCollator(tokenizer.pad_token_id)(items)


def plain_inputs(batch, pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same frames and every caption of the batch (global, region, hard negatives) as one text batch."""
    frames = batch["pixel_values"].flatten(0, 1)  # (B*T, 3, H, W)
    rows = [
        (batch["caption_ids"], batch["caption_mask"]),
        (batch["region_caption_ids"].flatten(0, 1), batch["region_caption_mask"].flatten(0, 1)),
        (batch["hard_negative_ids"].flatten(0, 2), batch["hard_negative_mask"].flatten(0, 2)),
    ]
    length = max(ids.shape[-1] for ids, _ in rows)
    ids = torch.cat(
        [torch.nn.functional.pad(i, (0, length - i.shape[-1]), value=pad_token_id) for i, _ in rows]
    )
    mask = torch.cat([torch.nn.functional.pad(m, (0, length - m.shape[-1])) for _, m in rows])
    return frames, ids, mask  # (B*T, 3, H, W), (N, L), (N, L)


# -------------------------------------------------------------------------------------------------- models
def build_models(base: Path) -> tuple[FGCLIPModel, CLIPModel]:
    torch.manual_seed(0)
    ours, report = build_from_config(base)
    print(report.summary().splitlines()[0][:120] + " ...")
    raw = {k: v for k, v in json.loads((base / "config.json").read_text()).items()
           if k not in ("architectures", "auto_map", "model_type", "torch_dtype", "dtype")}  # fmt: skip
    plain = CLIPModel(CLIPConfig(**raw))
    return ours.train(), plain.train()


def fgclip_step(model: FGCLIPModel, objective: FGCLIPObjective, batch) -> None:
    features = model(**batch)
    losses, _ = objective(features, batch)
    objective.total(losses).backward()


def clip_step(model: CLIPModel, frames: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> None:
    logits = model(pixel_values=frames, input_ids=ids, attention_mask=mask).logits_per_image  # (B*T, N)
    # A contrastive-shaped loss over every logit (the pairing does not matter for timing).
    (logits.logsumexp(1).mean() + logits.logsumexp(0).mean() - 2 * logits.mean()).backward()


# {key: (label, gradient checkpointing on, which model steps)}
VARIANTS = {
    "plain": ("HF CLIPModel fwd+bwd (baseline)", False, "plain"),
    "fgclip": ("fgclip full step", False, "fgclip"),
    "plain-ckpt": ("HF CLIPModel fwd+bwd, grad. checkpointing", True, "plain"),
    "fgclip-ckpt": ("fgclip full step, grad. checkpointing", True, "fgclip"),
}


def _variant_list(text: str) -> list[str]:
    keys = [key.strip() for key in text.split(",") if key.strip()]
    unknown = [key for key in keys if key not in VARIANTS]
    if unknown or not keys or len(set(keys)) != len(keys):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give distinct names from {', '.join(VARIANTS)} (comma-separated)"
        )
    return keys


def summary_table(variants, cpu_times, times, memory) -> str:
    """Markdown table: medians, and each step's CPU-time ratio to plain paired round by round (median, range).

    Pairing within a round (the steps of one round ran back to back) takes the slow drift of a shared
    machine out of the ratio; the range over rounds is its spread.
    """
    lines = [
        "| step | CPU s/step (median; min-max) | wall s/step (median) | peak RSS growth (MiB, median; max) "
        "| CPU ratio to plain (median of paired rounds; min-max) |",
        "|---|---|---|---|---|",
    ]
    for key, (label, _, _) in variants.items():
        cpu = cpu_times[key]
        baseline = "plain-ckpt" if key.endswith("-ckpt") and "plain-ckpt" in variants else "plain"
        ratio = "—"
        if baseline in variants and baseline != key:
            paired = [ours / base for ours, base in zip(cpu, cpu_times[baseline], strict=True)]
            ratio = f"{statistics.median(paired):.3f}x ({min(paired):.3f}-{max(paired):.3f}) vs {baseline}"
        elif key == baseline:
            ratio = "1.000x"
        lines.append(
            f"| {label} | {statistics.median(cpu):.1f} ({min(cpu):.1f}-{max(cpu):.1f}) | "
            f"{statistics.median(times[key]):.1f} | "
            f"{statistics.median(memory[key]) / 2**20:.0f} ({max(memory[key]) / 2**20:.0f}) | {ratio} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ measuring
def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS growth in bytes over the RSS at the start) of one call.

    CPU seconds (this process, all threads) are what to compare on a shared machine: other processes'
    load stretches wall time, not them.

    glibc keeps freed blocks mapped, so the previous step's activations are returned to the OS first
    (malloc_trim); otherwise a step reusing them would look free.
    """
    LIBC.malloc_trim(0)
    start_rss, peak, done = rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    done.set()
    sampler.join()
    return seconds, cpu, max(peak[0], rss_bytes()) - start_rss


def profile_forward(ours: FGCLIPModel, plain: CLIPModel, batch, pad_token_id: int, repeats: int):
    """Forward time of each part of fgclip's step and of the plain model's, no grad (median of `repeats`)."""
    frames, ids, mask = plain_inputs(batch, pad_token_id)
    frame_mask = batch["frame_mask"]
    with torch.no_grad():
        pooled, dense = ours.encode_frames(frames)
        frame_embeds = torch.nn.functional.normalize(ours.visual_projection(pooled), dim=-1).view(
            *frame_mask.shape, -1
        )
        index = torch.arange(frames.shape[0]).view(frame_mask.shape)  # (B, T)
        region_ids = torch.cat(
            [batch["region_caption_ids"].flatten(0, 1), batch["hard_negative_ids"].flatten(0, 2)]
        )
        region_mask = torch.cat(
            [batch["region_caption_mask"].flatten(0, 1), batch["hard_negative_mask"].flatten(0, 2)]
        )
        parts = {
            "fgclip vision: encode_frames (CLS + dense)": lambda: ours.encode_frames(frames),
            "plain vision: vision_model + projection": lambda: plain.get_image_features(frames),
            "fgclip temporal module": lambda: ours.clip_embeddings(frame_embeds, frame_mask),
            "fgclip region path: RoIAlign + pooling + roi_projection": lambda: ours.roi_projection(
                pool_region_features(
                    dense,
                    index,
                    batch["region_boxes"],
                    batch["region_box_mask"],
                    batch["region_valid"],
                    pooling=ours.config.region_pooling,
                )
            ),  # fmt: skip
            "fgclip global captions (long table)": lambda: ours.get_caption_features(
                batch["caption_ids"], batch["caption_mask"]
            ),
            "fgclip region + hard-negative captions": lambda: ours.get_text_features(region_ids, region_mask),
            "plain text: every caption in one batch": lambda: plain.get_text_features(ids, mask),
        }
        rows = []
        for name, fn in parts.items():
            rows.append((name, statistics.median(timed(fn)[1] for _ in range(repeats))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", type=Path, default=SHARED_REAL / "fgclip_base",
                        help="released config.json + tokenizer directory")  # fmt: skip
    parser.add_argument(
        "--clip-list", type=Path, default=SHARED_REAL / "fgclip_vad" / "ucf_fgclip_with_v3.json"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (0 on a slow CPU)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--hard-negatives", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU seconds = compute)")
    parser.add_argument(
        "--variants", type=_variant_list, default=list(VARIANTS),
        help="comma-separated steps to time, interleaved in this order each round, from "
        f"{','.join(VARIANTS)}; ratios are to 'plain' (or 'plain-ckpt' for '-ckpt' steps) when it is timed "
        "(default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--no-checkpointing", action="store_true",
        help="drop the '-ckpt' steps from --variants (kept for old command lines)",
    )  # fmt: skip
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also time each part's forward, median of N (default 0: no profile)")  # fmt: skip
    args = parser.parse_args()
    for path in (args.base / "config.json", args.clip_list):
        if not path.is_file():
            raise SystemExit(
                f"real_size_step.py: {path} not found (the shared real files; pass --base / --clip-list)"
            )
    if args.no_checkpointing:
        args.variants = [key for key in args.variants if not key.endswith("-ckpt")]
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.base)
    ours, plain = build_models(args.base)
    B, T, R, K = args.batch, args.frames, args.regions, args.hard_negatives
    batch = make_batch(tokenizer, *real_captions(args.clip_list, B), B, T, R, K, args.image_size)
    frames, ids, mask = plain_inputs(batch, tokenizer.pad_token_id)
    objective = FGCLIPObjective({})  # every term at its default weight

    def checkpointing(on: bool):
        for model in (ours, plain):
            model.activation_checkpointing_enable() if on else model.activation_checkpointing_disable()

    variants = {
        key: VARIANTS[key] for key in args.variants
    }  # {key: (label, gradient checkpointing on, step)}
    steps = {
        "plain": lambda: clip_step(plain, frames, ids, mask),
        "fgclip": lambda: fgclip_step(ours, objective, batch),
    }
    times = {key: [] for key in variants}
    cpu_times = {key: [] for key in variants}
    memory = {key: [] for key in variants}
    for repeat in range(args.warmup + args.repeats):  # the first `warmup` rounds are not counted
        for key, (label, ckpt, model) in variants.items():
            checkpointing(ckpt)
            seconds, cpu, grown = timed(steps[model])
            ours.zero_grad(set_to_none=True)
            plain.zero_grad(set_to_none=True)
            if repeat >= args.warmup:
                times[key].append(seconds)
                cpu_times[key].append(cpu)
                memory[key].append(grown)
            print(
                f"  round {repeat} {label}: {seconds:.2f} s wall, {cpu:.2f} s CPU, +{grown / 2**20:.0f} MiB",
                flush=True,
            )
    print(
        f"\nB={B} clips x T={T} frames ({B * T} frames of {args.image_size} px), R={R} regions, K={K} hard "
        f"negatives per region, {ids.shape[0]} captions (real, CLIP BPE; longest {int(mask.sum(-1).max())} "
        f"tokens); ViT-B/16 from {args.base / 'config.json'} at random init; {torch.get_num_threads()} threads; "
        f"median of {args.repeats}, order per round: {', '.join(variants)}"
    )
    print(summary_table(variants, cpu_times, times, memory))
    if args.profile:
        print(f"\nforward only, no grad, CPU ms (median of {args.profile}):\n| part | CPU ms |\n|---|---|")
        for name, value in profile_forward(ours, plain, batch, tokenizer.pad_token_id, args.profile):
            print(f"| {name} | {value * 1000:.0f} |")


if __name__ == "__main__":
    main()
