"""The real-size training step on a GPU: ViT-B/16 from the released FG-CLIP base config (random weights), bf16
autocast over fp32 master weights, AdamW; clips/s, frames/s, peak GPU memory, achieved TFLOP/s as a share of
the device's dense bf16 peak; then an evaluation throughput figure (frame embeddings, no grad). One command,
under 5 minutes on one H100/H200:

    python benchmarks/gpu_step.py                      # B=16 clips x T=8 frames, 224 px, 20 timed steps
    python benchmarks/gpu_step.py --batch 32 --checkpointing
    python benchmarks/gpu_step.py --dry-run            # CPU: tiny config, 2 steps, checks the script runs

FLOPs are counted from the config (multiply-accumulates x 2 of every encoder layer, patch embedding; text
at the batch's padded length; forward + backward = 3 x forward, 4 x with checkpointing) by the same
formula as benchmarks/feed_rate.py; the region path, temporal module and losses are left out (< 1 %).
Exits with a one-line message when no CUDA device is present (except with --dry-run).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
DRY_RUN_CAPTIONS = (
    ["a man snatched a red cloth and fled", "a car hits a man at night"],
    ["a man in white", "a man in black", "a woman falls down", "a grey car", "a man in red", "a shop door"],
)


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override is not None:
        return override
    return next((value for key, value in PEAK_BF16_TFLOPS.items() if key in device_name), None)


def step_flops(model, batch, checkpointing: bool) -> float:
    """Training FLOPs of one step of the two towers (see the module docstring)."""
    feed = _sibling("feed_rate")
    vision, text = model.config.vision_config.to_dict(), model.config.text_config.to_dict()
    frames = int(batch["frame_mask"].sum())
    size = batch["pixel_values"].shape[-1]
    captions = [
        (batch["caption_ids"].shape[0], batch["caption_ids"].shape[-1]),
        (int(batch["region_valid"].sum()) * (1 + batch["hard_negative_ids"].shape[2]), batch["region_caption_ids"].shape[-1]),
    ]  # fmt: skip
    forward = frames * feed.vision_flops_per_frame(vision, size)
    forward += sum(count * feed.text_flops_per_caption(text, length) for count, length in captions)
    return (4 if checkpointing else 3) * forward


def build(args):
    bench = _sibling("real_size_step")
    from fgclip.data.text import build_word_tokenizer, load_tokenizer
    from fgclip.model.configuration import tiny_config
    from fgclip.model.loading import build_from_config
    from fgclip.model.modeling import FGCLIPModel

    torch.manual_seed(0)
    if args.dry_run:
        words = sorted(
            {w for texts in DRY_RUN_CAPTIONS for t in texts for w in t.split()} | set(bench.COLOURS)
        )
        tokenizer = build_word_tokenizer(words)
        model = FGCLIPModel(
            tiny_config(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, image_size=32,
                        patch_size=8, vision_width=32, vision_layers=1, text_width=32, text_layers=1, heads=2,
                        projection_dim=32)
        )  # fmt: skip
        captions, size = DRY_RUN_CAPTIONS, 32
    else:
        for path in (args.base / "config.json", args.clip_list):
            if not path.is_file():
                raise SystemExit(
                    f"gpu_step.py: {path} not found (the shared real files; pass --base / --clip-list)"
                )
        tokenizer = load_tokenizer(args.base)
        model, report = build_from_config(args.base)
        print(report.summary().splitlines()[0])
        captions, size = bench.real_captions(args.clip_list, args.batch), 224
    batch = bench.make_batch(
        tokenizer, *captions, args.batch, args.frames, args.regions, args.hard_negatives, size
    )
    return model, batch


def train_rate(model, batch, args, device: torch.device) -> dict:
    from fgclip.losses.objective import FGCLIPObjective

    model.train()
    if args.checkpointing:
        model.activation_checkpointing_enable()
    objective = FGCLIPObjective({})  # every term at its default weight
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")
    on_device = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            features = model(**on_device)
            losses, _ = objective(features, on_device)
            total = objective.total(losses)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        model.clamp_logit_scales()  # what TemperatureClamp does after every optimizer step
        return total

    for _ in range(args.warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / args.steps
    wrong = [name for name, p in model.named_parameters() if p.dtype != torch.float32]
    if wrong:  # autocast computes in bf16; the parameters the optimizer updates must stay fp32
        raise SystemExit(f"gpu_step.py: parameters are no longer fp32 master weights: {wrong[:3]}")
    return {
        "seconds_per_step": seconds,
        "loss": float(loss.detach()),
        "flops": step_flops(model, batch, args.checkpointing),
    }


def eval_rate(model, batch, args, device: torch.device) -> float:
    """Frames embedded per second (frame_embeddings: CLS path, no grad, bf16 autocast), `--eval-batch` at a time."""
    model.eval()
    frames = batch["pixel_values"].flatten(0, 1).to(device)  # (B*T, 3, H, W)
    frames = frames.repeat(max(1, args.eval_batch // frames.shape[0]), 1, 1, 1)[: args.eval_batch]
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        model.frame_embeddings(frames)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(args.eval_steps):
            model.frame_embeddings(frames)
        synchronize(device)
    return args.eval_steps * frames.shape[0] / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base", type=Path, help="released config.json + tokenizer (default: shared/data/real)"
    )
    parser.add_argument("--clip-list", type=Path, help="real captions (default: ucf_fgclip_with_v3.json)")
    parser.add_argument("--batch", type=int, default=16, help="clips per step")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--hard-negatives", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing of every layer")
    parser.add_argument("--eval-batch", type=int, default=256, help="frames per evaluation batch")
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument(
        "--peak-tflops", type=float, help="the device's dense bf16 peak (default: by its name)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU, tiny config, 2 steps: checks the script runs"
    )
    args = parser.parse_args(argv)
    if args.dry_run:
        args.steps, args.warmup, args.eval_steps, args.eval_batch = 2, 1, 1, 8
        args.batch, args.frames = min(args.batch, 2), min(args.frames, 2)
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("gpu_step.py: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine, "
              "or pass --dry-run for the CPU smoke test", file=sys.stderr)  # fmt: skip
        return 1
    else:
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True
    real = _sibling("real_size_step").SHARED_REAL  # imports fgclip: after the cheap CUDA check
    args.base = args.base or real / "fgclip_base"
    args.clip_list = args.clip_list or real / "fgclip_vad" / "ucf_fgclip_with_v3.json"
    model, batch = build(args)
    model = model.to(device)
    train = train_rate(model, batch, args, device)
    frames_per_s_eval = eval_rate(model, batch, args, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    peak = peak_tflops(name, args.peak_tflops)
    achieved = train["flops"] / train["seconds_per_step"] / 1e12
    frames = int(batch["frame_mask"].sum())
    result = {
        "device": name,
        "batch": f"{args.batch} clips x {args.frames} frames, {args.regions} regions, {args.hard_negatives} hard negatives",
        "checkpointing": args.checkpointing,
        "seconds_per_step": round(train["seconds_per_step"], 4),
        "clips_per_s": round(args.batch / train["seconds_per_step"], 1),
        "frames_per_s": round(frames / train["seconds_per_step"], 1),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
        "tflops_per_step": float(f"{train['flops'] / 1e12:.4g}"),
        "achieved_tflops": float(f"{achieved:.4g}"),
        "share_of_peak": round(achieved / peak, 3) if peak else None,
        "peak_bf16_tflops": peak,
        "eval_frames_per_s": round(frames_per_s_eval, 1),
        "final_loss": round(train["loss"], 4),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
