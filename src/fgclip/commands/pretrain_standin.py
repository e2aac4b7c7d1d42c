"""`fgclip pretrain-standin`: build the pretrained stand-in (a tiny CLIP) from the synthetic image corpus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    """Defaults are `PretrainSettings`' (not imported here: building the parser must not import torch)."""
    parser = subparsers.add_parser(
        "pretrain-standin",
        help="pretrain the tiny stand-in CLIP on the synthetic image corpus (global contrastive only)",
        description="Writes an fgclip / HF CLIP directory (weights, config, tokenizer, standin.json) that "
        "loads with model.init: DIR. The package ships one built with the defaults (model.init: standin); "
        "see docs/standin.md.",
    )
    parser.add_argument("--out", required=True, help="output directory (must not exist, or be empty)")
    parser.add_argument("--seed", type=int, help="default 0")
    parser.add_argument("--steps", type=int, help="optimizer steps (default 160)")
    parser.add_argument("--batch-size", type=int, help="image-caption pairs per step (default 64)")
    parser.add_argument("--learning-rate", type=float, help="AdamW peak rate (default 1e-3)")
    parser.add_argument("--images", type=int, help="training images rendered (default 2048)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(
            f"fgclip pretrain-standin: --out {out} exists and is not empty; give a new directory",
            file=sys.stderr,
        )
        return 1
    from dataclasses import replace

    from fgclip.standin.pretrain import PretrainSettings, pretrain, save_standin

    given = {
        "seed": args.seed, "steps": args.steps, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "num_train_images": args.images,
    }  # fmt: skip
    settings = replace(PretrainSettings(), **{k: v for k, v in given.items() if v is not None})
    if settings.steps < 1 or settings.batch_size < 2 or settings.num_train_images < settings.batch_size:
        print(
            "fgclip pretrain-standin: needs --steps >= 1, --batch-size >= 2 and --images >= --batch-size",
            file=sys.stderr,
        )
        return 2
    result = pretrain(settings)
    save_standin(result, settings, out)
    heldout = result.heldout
    print(
        f"[standin] held-out image<->caption R@1 over {heldout['num_images']} images (chance "
        f"{heldout['chance_R@1']:.3f}): image->text {heldout['short_text/image_to_text_R@1']:.3f}, "
        f"text->image {heldout['short_text/text_to_image_R@1']:.3f}; long-caption path "
        f"{heldout['long_text/image_to_text_R@1']:.3f} / {heldout['long_text/text_to_image_R@1']:.3f}"
    )
    print(f"[standin] {out} ({result.seconds:.0f} s wall, {result.cpu_seconds:.0f} s CPU)")
    return 0
