"""`fgclip data show`: contact sheets (and a timeline, an MP4, a grid check) of clips as the model receives them.

    fgclip data show CONFIG_OR_MANIFEST (--entry N | --video NAME | --random K) [--seed S] [--epoch E]
        [--split train|eval] [--out DIR] [--strip] [--mp4] [--grid-check] [--key value ...]

From a YAML config the split's manifests are read exactly as `fgclip train` reads them (`data.video_root`,
`data.path_remaps`, `data.manifest_annotation_fps`, hard negatives, the frame cache; extra `--key value` pairs
override the config as for train), and the item seed of a training clip is the one training gives it
(`train.seed`, the epoch, the clip's index in the split). A bare manifest is read through the same `data`
section (`sources.data_config`: the defaults, with `--video-root`, `--path-remap`, `--annotation-fps` and the
sampling flags standing for their `data.*` keys; bad entries skipped, item seed 0). Drawing: `fgclip.tools.show`.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fgclip.commands.data.sources import data_config, is_config

if TYPE_CHECKING:
    from fgclip.data.dataset import ClipDataset, SamplingOptions
    from fgclip.data.formats import ManifestRead
    from fgclip.data.frame_cache import FrameCache
    from fgclip.data.records import Clip

PROG = "fgclip data show"


class ShowError(ValueError):
    """Bad input for data show: printed as one line, exit 1."""


class ShowUsageError(ShowError):
    """A wrong combination of arguments: printed as one line, exit 2."""


def register(data_subparsers) -> None:
    show = data_subparsers.add_parser(
        "show",
        help="draw clips as the model receives them: sampled frames, interpolated boxes, captions (PNG)",
        epilog="With a YAML config, extra --key value pairs override it as for train "
        "(e.g. --data.num_frames 16 --data.frame_cache null).",
        allow_abbrev=False,
    )
    show.add_argument("source", metavar="CONFIG_OR_MANIFEST", help="a YAML config (.yaml/.yml) or a manifest")
    pick = show.add_mutually_exclusive_group(required=True)
    pick.add_argument("--entry", type=int, metavar="N", help="the manifest's entry N (0-based)")
    pick.add_argument(
        "--video", metavar="NAME", help="every clip of this video (manifest path, file name or stem)"
    )
    pick.add_argument("--random", type=int, metavar="K", help="K clips drawn at random (--seed)")
    show.add_argument(
        "--manifest", help="config with several manifests in the split: the one --entry counts in"
    )
    show.add_argument(
        "--split", choices=("train", "eval"), default="train", help="the sampler drawn (default train)"
    )
    show.add_argument("--seed", type=int, help="training seed (default: the config's train.seed, else 0)")
    show.add_argument("--epoch", type=int, default=0, help="training epoch whose frame draw is shown")
    show.add_argument("--out", default="data_show", help="output folder (default ./data_show)")
    show.add_argument("--strip", action="store_true", help="add a timeline of span, keyframes and samples")
    show.add_argument("--anomaly-map", metavar="CHECKPOINT",
                      help="blend this checkpoint's anomaly map (region head, its run's prompts) into each frame")  # fmt: skip
    show.add_argument("--mp4", action="store_true", help="also write an annotated MP4 of the whole span")
    show.add_argument(
        "--grid-check", action="store_true", help="also draw the clip on the video's native fps"
    )
    show.add_argument("--frame-height", type=int, default=180, help="frame height on the sheet (px)")
    bare = show.add_argument_group(
        "data settings (flags for the `data.*` keys; a bare manifest skips bad entries)"
    )
    bare.add_argument("--video-root", help="folder the manifest's video paths are relative to (default .)")
    bare.add_argument("--path-remap", action="append", metavar="OLD=NEW", help="video path prefix remap")
    bare.add_argument(
        "--hard-negatives", action="append", metavar="FILE", help="hard-negative file (repeatable)"
    )
    bare.add_argument(
        "--annotation-fps", type=float, help="grid of a manifest that declares none (default 25)"
    )
    bare.add_argument("--num-frames", type=int, help="frames sampled per clip (default 8)")
    bare.add_argument("--max-regions", type=int, help="regions kept per clip (default 4)")
    bare.add_argument("--context-s", type=float, help="abnormal clips: context per side (s, default 2)")
    bare.add_argument(
        "--single-keyframe-hold-s", type=float, help="single-keyframe visibility (s, default 0.5)"
    )
    show.set_defaults(run=run, accepts_overrides=True)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from fgclip.config import ConfigError
    from fgclip.data.errors import ManifestError
    from fgclip.data.video import VideoError

    try:
        split = _load_split(args, overrides)
        chosen = _choose(split, args)
        _check_media(split, chosen)
        for index in chosen:
            for path in _show(split, index, args):
                print(path)
    except (ShowError, ConfigError, ManifestError, VideoError, FileNotFoundError) as error:
        text = str(error).replace("\n", " ")
        print(f"{PROG}: {text}", file=sys.stderr)
        return 2 if isinstance(error, ShowUsageError) else 1
    return 0


@dataclass
class _Split:
    clips: list[Clip]  # in the dataset's order (a clip's index is its item index)
    manifests: list[ManifestRead]
    ranges: list[tuple[int, int]]  # clips[a:b] came from manifests[k]
    options: SamplingOptions
    frame_cache: FrameCache | None
    train: bool
    seed: int

    @property
    def name(self) -> str:
        return "train" if self.train else "eval"

    def dataset_for(self, clip: Clip) -> ClipDataset:
        """A dataset of this split's settings holding `clip` (tokenizer-free: data show draws no tokens); the
        item seed is passed on by index, so the one-clip dataset draws what the whole split would."""
        from fgclip.data.dataset import ClipDataset

        return ClipDataset([clip], None, self.options, train=self.train, frame_cache=self.frame_cache)


def _load_split(args, overrides: list[str]) -> _Split:
    """The split's clips read through the same `data` section as every data verb (`sources.data_config`): a YAML
    config with its overrides, or a bare manifest with the flags standing for its data settings."""
    from fgclip import builders
    from fgclip.data.formats import read_manifests

    from_config = is_config(args.source)
    if not from_config and overrides:
        raise ShowUsageError(
            f"unrecognized arguments {' '.join(overrides)}: --key value overrides need a YAML config, "
            f"{args.source} is a manifest"
        )
    if not from_config and not Path(args.source).is_file():
        raise ShowError(f"manifest not found: {args.source}")
    # a bare manifest is either split's (--split picks the sampler) and shows its readable entries
    bare = (
        []
        if from_config
        else ["--data.eval_manifests", json.dumps([args.source]), "--data.invalid_entries", "skip"]
    )
    config = data_config([args.source], args, [*bare, *overrides])
    data = config.data
    paths = data.train_manifests if args.split == "train" else data.eval_manifests
    if not paths:
        raise ShowError(f"{args.source}: data.{args.split}_manifests is empty")
    reads = read_manifests(paths, builders.data_options(data), refuse_errors=False)  # bad entries: refused
    for read in reads:
        if read.errors and data.invalid_entries == "error":
            print(
                f"{PROG}: warning: {read.path} has {len(read.errors)} bad entries; training refuses it "
                "(data.invalid_entries=error); shown here without them",
                file=sys.stderr,
            )
    image_size = data.image_size or builders.input_image_size(config.model)
    options = builders.sampling_options(data, image_size)
    cache = builders.frame_cache(data, options.image_size)
    default_seed = config.train.seed if from_config else 0  # a bare manifest has no training seed
    seed = args.seed if args.seed is not None else default_seed
    return _split(reads, options, cache, args.split == "train", seed)


def _split(reads, options, cache, train: bool, seed: int) -> _Split:
    clips, ranges = [], []
    for read in reads:
        ranges.append((len(clips), len(clips) + len(read.clips)))
        clips.extend(read.clips)
    return _Split(clips, reads, ranges, options, cache, train, seed)


# ------------------------------------------------------------------------------------------------ choosing


def _choose(split: _Split, args) -> list[int]:
    if args.entry is not None:
        return [_entry_index(split, args.entry, args.manifest)]
    if args.video is not None:
        found = [
            i for i, c in enumerate(split.clips) if args.video in (c.video_key, c.video.name, c.video.stem)
        ]
        if not found:
            names = ", ".join(m.path for m in split.manifests)
            raise ShowError(
                f"no clip of video {args.video!r} in {names} (give the manifest's video path or file name)"
            )
        return found
    import numpy as np

    videos = [i for i, c in enumerate(split.clips) if not c.is_image]
    if args.random < 1:
        raise ShowUsageError(f"--random must be >= 1, got {args.random}")
    rng = np.random.default_rng(split.seed)
    return sorted(int(i) for i in rng.choice(videos, size=min(args.random, len(videos)), replace=False))


def _entry_index(split: _Split, entry: int, manifest: str | None) -> int:
    k = _manifest_index(split, manifest)
    read, (start, stop) = split.manifests[k], split.ranges[k]
    wanted = f"{Path(read.path).name}:{entry}"
    for i in range(start, stop):
        if split.clips[i].sample_id == wanted:
            return i
    if not 0 <= entry < read.num_entries:
        raise ShowError(f"{read.path}: no entry {entry} (the manifest has entries 0-{read.num_entries - 1})")
    problems = [p for p in read.errors if p.index == entry]
    if problems:
        raise ShowError(f"{read.path}: entry {entry} cannot be read, so no model sees it: {problems[0]}")
    raise ShowError(f"{read.path}: entry {entry} gives no clip (see `fgclip data check {read.path}`)")


def _manifest_index(split: _Split, manifest: str | None) -> int:
    paths = [m.path for m in split.manifests]
    if manifest is None:
        if len(paths) > 1:
            raise ShowError(
                f"--entry is ambiguous: the {split.name} split reads {', '.join(paths)}; add --manifest"
            )
        return 0
    for k, path in enumerate(paths):
        if manifest == path or Path(manifest).resolve() == Path(path).resolve():
            return k
    raise ShowError(
        f"--manifest {manifest}: not one of the {split.name} split's manifests ({', '.join(paths)})"
    )


def _check_media(split: _Split, chosen: list[int]) -> None:
    for index in chosen:
        clip = split.clips[index]
        if clip.is_image:
            raise ShowError(f"{clip.sample_id}: {clip.video} is an image record; data show draws video clips")
        cached = split.frame_cache is not None and split.frame_cache.spans(clip.video)
        if not cached and not clip.video.is_file():
            raise ShowError(
                f"{clip.sample_id}: video not found: {clip.video} (manifest path {clip.video_key!r}; set "
                "data.video_root / data.path_remaps in the config, or --video-root / --path-remap)"
            )


# ------------------------------------------------------------------------------------------------ drawing


def _show(split: _Split, index: int, args) -> list[Path]:
    from fgclip.tools.show import clip_view, draw_grid_check, draw_sheet, write_mp4

    clip = split.clips[index]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest, _, entry = clip.sample_id.rpartition(":")
    stem = f"{Path(manifest).stem}_entry{entry}_{split.name}"
    if split.train:
        stem += f"_seed{split.seed}_epoch{args.epoch}"
    dataset = split.dataset_for(clip)
    view = clip_view(dataset, clip, index, seed=split.seed, epoch=args.epoch)
    if args.anomaly_map:
        view = _with_anomaly_maps(view, args.anomaly_map)
    sheet, _ = draw_sheet(view, frame_height=args.frame_height, strip=args.strip)
    written = [out / f"{stem}.png"]
    sheet.save(written[0])
    if args.mp4:
        written.append(write_mp4(dataset, view, out / f"{stem}_span.mp4"))
    if args.grid_check:
        grid = _grid_of(split, index)
        image = draw_grid_check(
            dataset, clip, index, grid, seed=split.seed, epoch=args.epoch, frame_height=args.frame_height
        )
        written.append(out / f"{stem}_grid_check.png")
        image.save(written[-1])
    return written


def _with_anomaly_maps(view, checkpoint: str):
    """The view with each frame's anomaly map blended in (fgclip.evaluation.localization), frames resized to the
    model's input for scoring, the map drawn at the frame's own size."""
    import dataclasses

    import numpy as np
    import torch.nn.functional as F

    from fgclip.data.dataset import to_pixel_values
    from fgclip.evaluation.localization import frame_anomaly_maps, overlay_map

    model, bank, size = _map_model(checkpoint)
    pixels = F.interpolate(
        to_pixel_values(view.frames), size=(size, size), mode="bilinear", align_corners=False
    )
    maps = frame_anomaly_maps(model, pixels, bank).numpy()  # (T, S, S)
    frames = np.stack([overlay_map(frame, heat) for frame, heat in zip(view.frames, maps, strict=True)])
    return dataclasses.replace(view, frames=frames)


@functools.cache
def _map_model(checkpoint: str):
    """(model, region prompt bank, input size) of a checkpoint, loaded once per command."""
    from fgclip import builders
    from fgclip.evaluation.zeroshot import load_prompt_set

    loaded = builders.load_run(checkpoint)
    if not loaded.config.eval.prompts:
        raise ShowError(f"--anomaly-map {checkpoint}: its run config names no prompt set (eval.prompts)")
    prompts = load_prompt_set(loaded.config.eval.prompts)
    bank = builders.prompt_bank(loaded.config, loaded.model, loaded.tokenizer, prompts, head="region")
    return loaded.model, bank, builders.model_image_size(loaded.model)


def _grid_of(split: _Split, index: int) -> float:
    for read, (start, stop) in zip(split.manifests, split.ranges, strict=True):
        if start <= index < stop:
            if not read.annotation_fps:
                raise ShowError(
                    f"{read.path}: has no annotation grid (its times are seconds): no --grid-check"
                )
            return float(read.annotation_fps)
    raise AssertionError(index)
