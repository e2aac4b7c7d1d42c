"""Feature export cost of 1 / 5 / 10 crops: seconds per video, and the share spent outside the model.

    python benchmarks/export_crops.py                          # 4 twenty-second 320x240 videos, a ViT-B/32-sized
                                                               # vision tower at 224 px (random weights)
    python benchmarks/export_crops.py --videos 2 --seconds 5 --tiny   # a quick run on the 32 px test model

Every crop of a sampled frame goes through the vision tower and the temporal module, so the model's share grows
with the crop count while decoding (once per frame, at 256 px for 5 / 10 crops) does not.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from eval_speed import make_videos  # benchmarks/ is on sys.path when a script here runs

from fgclip.data.crops import CropSpec
from fgclip.data.frames import FrameSource
from fgclip.evaluation.export import export_features
from fgclip.model.configuration import tiny_config
from fgclip.model.modeling import FGCLIPModel


def model(tiny: bool) -> FGCLIPModel:
    torch.manual_seed(0)
    if tiny:
        config = tiny_config(vocab_size=40, image_size=32, patch_size=8, vision_width=32, text_width=32,
                             vision_layers=1, text_layers=1, heads=2, projection_dim=16)  # fmt: skip
    else:
        config = tiny_config(vocab_size=49408, image_size=224, patch_size=32, vision_width=768, text_width=512,
                             vision_layers=12, text_layers=1, heads=8, projection_dim=512)  # fmt: skip
    return FGCLIPModel(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--frames-per-snippet", type=int, default=8)
    parser.add_argument(
        "--tiny", action="store_true", help="the 32 px test model instead of a B/32-shaped one"
    )
    args = parser.parse_args()
    net = model(args.tiny)
    size = net.config.vision_config.image_size
    with tempfile.TemporaryDirectory() as tmp:
        videos = list(make_videos(Path(tmp), args.videos, args.seconds).values())
        print(f"{args.videos} videos x {args.seconds:g} s, 30 fps, 320x240; {size} px model; "
              f"{args.frames_per_snippet} frames per snippet; torch threads {torch.get_num_threads()}")  # fmt: skip
        base = None
        for count in (1, 5, 10):
            crops = CropSpec.field(count, size)
            start = time.perf_counter()
            export_features(net, videos, Path(tmp) / f"crops{count}", FrameSource(crops.resize_side),
                            frames_per_snippet=args.frames_per_snippet, progress=False, crops=crops,
                            layout="vadclip")  # fmt: skip
            per_video = (time.perf_counter() - start) / args.videos
            base = base or per_video
            print(f"{count:>2} crop(s): {per_video:6.2f} s per video ({per_video / base:4.1f}x 1 crop)")


if __name__ == "__main__":
    main()
