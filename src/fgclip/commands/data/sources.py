"""What the data verbs share: CONFIG or bare MANIFEST... turned into one run config, so every verb reads the
manifests through the same `data` section (`fgclip.builders.data_options`) as `fgclip train` does.

A run config (`.yaml`) is read with trailing `--key value` overrides; bare manifests become
`data.train_manifests` of the default config, and the flags below stand for their `data.*` settings.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from fgclip.commands._errors import UsageError

# flag (argparse dest) -> the data setting it stands for, for bare manifests
DATA_FLAGS = {
    "video_root": "data.video_root",
    "annotation_fps": "data.annotation_fps",
    "hard_negatives": "data.hard_negatives",
    "test_list": "data.test_list",
    "context_s": "data.context_s",
    "single_keyframe_hold_s": "data.single_keyframe_hold_s",
    "num_frames": "data.num_frames",
    "max_regions": "data.max_regions",
    "video_prefix": "data.normal_dict_video_prefix",
    "open_track_end": "data.open_track_end",
    "caption_field": "data.labelstudio_caption_field",
}


def source_arguments(parser) -> None:
    """CONFIG or MANIFEST..., and the flags that stand for data settings when there is no config."""
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="CONFIG_OR_MANIFEST",
        help="a run config (.yaml; its train and eval manifests and data settings) or manifest files",
    )
    parser.add_argument("--video-root", help="folder the manifests' video paths are relative to")
    parser.add_argument(
        "--path-remap", action="append", metavar="OLD=NEW", help="replace a video path prefix (repeatable)"
    )
    parser.add_argument(
        "--annotation-fps", type=float,
        help="grid of keyframe frame numbers for manifests that do not declare one (default 25)",
    )  # fmt: skip
    parser.add_argument(
        "--hard-negatives", action="append", metavar="FILE", help="hard-negative file (repeatable)"
    )
    parser.add_argument("--skip-invalid", action="store_true", help="leave out bad manifest entries")
    parser.add_argument("--context-s", type=float, help="abnormal clips: context per side (s, default 2)")
    parser.add_argument(
        "--single-keyframe-hold-s", type=float, help="single-keyframe visibility (s, default 0.5)"
    )
    conversion_arguments(parser)
    parser.set_defaults(accepts_overrides=True)


def conversion_arguments(parser) -> None:
    parser.add_argument("--video-prefix", help="normal-clip dicts: prefix of their bare video names")
    parser.add_argument(
        "--open-track-end", choices=("video_end", "last_keyframe"),
        help="Label Studio tracks ending on an enabled keyframe: visible to the video end (as in Label Studio)",
    )  # fmt: skip
    parser.add_argument("--caption-field", help="Label Studio: task data field with the global caption")


def data_config(sources: list[str], args, overrides: list[str]):
    """The run config of a data verb: the given YAML, or the defaults with the manifests and flags (the flags
    given stand for their `data.*` settings in both cases; `--key value` overrides come last and win)."""
    from fgclip.config import load_config

    flags = []
    for dest, key in DATA_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            flags += [f"--{key}", json.dumps(value)]
    if getattr(args, "path_remap", None):
        flags += ["--data.path_remaps", json.dumps(parse_remaps(args.path_remap))]
    if getattr(args, "skip_invalid", False):
        flags += ["--data.invalid_entries", "skip"]
    if is_config(sources[0]):
        if len(sources) > 1:
            raise UsageError("give one run config, or manifest files, not both")
        return load_config(sources[0], flags + list(overrides))
    manifests = ["--data.train_manifests", json.dumps(sources)]
    return load_config(None, manifests + flags + list(overrides))


def is_config(path: str) -> bool:
    return Path(path).suffix.lower() in (".yaml", ".yml")


# flags of `fgclip data show` that read a bare manifest as a data verb read it (dest -> flag)
SHOW_FLAGS = {
    "video_root": "--video-root",
    "annotation_fps": "--annotation-fps",
    "num_frames": "--num-frames",
    "max_regions": "--max-regions",
    "context_s": "--context-s",
    "single_keyframe_hold_s": "--single-keyframe-hold-s",
}


def show_command(sources: list[str], args, overrides: list[str], config):
    """(manifest, entry) -> the `fgclip data show` command that reads that entry as this verb read it: the same
    run config and overrides, or the same bare-manifest flags."""

    def command(manifest: str, entry: int) -> str:
        if is_config(sources[0]):
            split = "train" if manifest in config.data.train_manifests else "eval"
            words = [sources[0], "--entry", str(entry), "--manifest", manifest, "--split", split, *overrides]
        else:
            words = [manifest, "--entry", str(entry)]
            for dest, flag in SHOW_FLAGS.items():
                value = getattr(args, dest, None)
                if value is not None:
                    words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
            for pair in getattr(args, "path_remap", None) or []:
                words += ["--path-remap", pair]
        return "fgclip data show " + " ".join(shlex.quote(str(w)) for w in words)

    return command


def all_manifests(config) -> list[str]:
    return list(dict.fromkeys([*config.data.train_manifests, *config.data.eval_manifests]))


def parse_remaps(pairs: list[str] | None) -> dict[str, str]:
    remaps = {}
    for pair in pairs or []:
        old, sep, new = pair.partition("=")
        if not sep:
            raise UsageError(f"--path-remap expects OLD=NEW, got {pair!r}")
        remaps[old] = new
    return remaps
