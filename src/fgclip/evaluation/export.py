"""Per-snippet feature export: fgclip's layout or the field's (VadCLIP), 1 / 5 / 10 crops, atomic and resumable.

Snippet definition (recorded in the metadata as `snippet`): a video of N native frames (the exact count, from
the packet index) is cut into snippets of `snippet_frames` (16) consecutive frames; from each snippet
`frames_per_snippet` frames are sampled at bin centres (`SnippetLayout.sample_frames`), each is embedded by the
vision tower + `visual_projection` and L2-normalised, the F frame embeddings are pooled by the model's temporal
module (`clip_embeddings`: temporal position embedding, masked transformer, attention pooling) and the result
is L2-normalised again: one row of D = `projection_dim` float32 values. The short last snippet (the remaining
1..15 frames when 16 does not divide N): `partial_snippet=keep` embeds it from frames sampled inside itself
(num_snippets = ceil(N / 16)); `drop` omits it (floor(N / 16), the RTFM / VadCLIP convention of whole snippets).
With 5 or 10 crops (`fgclip.data.crops`) every crop of every sampled frame goes through the same path, one
array per crop.

Layouts (`FeaturePlan.files`):
- `fgclip`: `<out>/<stem>.npy` (1 crop) or `<out>/<stem>__k.npy` (crop k of 5 / 10);
- `vadclip`: `<out>/<Class>/<stem>__k.npy` for every crop k (also `__0` alone for 1 crop), where Class is the
  video's folder (UCF-Crime keeps its videos in `Abuse/`, `Training_Normal_Videos_Anomaly/` ...), plus the
  list CSVs in the form of VadCLIP's `list/ucf_CLIP_rgb.csv` / `ucf_CLIP_rgbtest.csv`: a header `path,label`,
  one row per file, `path` absolute, `label` the class (`Normal` for a folder starting `Normal`,
  `Training_Normal` or `Testing_Normal`): `features_rgb.csv` lists every crop of every video (what VadCLIP
  trains on), `features_rgbtest.csv` one crop per video (`test_crop`; VadCLIP's own test list uses `__5`).
Both layouts write `features.json` (`FEATURES_FILE`): the settings, the snippet definition, the crops, and per
video stem `video`, `class`, `num_frames`, `fps`, `num_snippets`, `last_snippet_frames` and `files`.

Atomic and resumable: every `.npy`, CSV and JSON is written to `<name>.partial` and renamed, so a killed export
leaves whole files or `.partial` leftovers, never a torn file under a final name. `export_settings.json` is written
first; `skip_existing` refuses a folder written with other settings, then checks every existing file of a video
(readable, float32, 2-D, the snippet count its video's frame count gives, one dimension) and rebuilds that
video's metadata from the files and the video; a file that fails is named in a warning and the video redone.

Sharding (`Shard`): shard i of n takes videos i, i + n, i + 2n, ... of the input list. Under `torchrun` each rank
exports its shard and rank 0 gathers the metadata and writes `features.json`; with an explicit `--shard I/N`
(array jobs) each shard writes `features.shard-I-of-N.json` and `merge_feature_shards` joins them into the
`features.json` (and CSVs) of the single-process run, in the input order.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fgclip.data.crops import CropSpec
from fgclip.distributed import Shard, gather_objects
from fgclip.evaluation.anomaly import NORMAL_CLASS
from fgclip.evaluation.snippet_options import DEFAULT_SNIPPETS, SnippetOptions
from fgclip.evaluation.snippets import iter_video_snippets, readable_frame_times, video_fps

logger = logging.getLogger(__name__)

FEATURES_FILE = "features.json"
SETTINGS_FILE = "export_settings.json"
TRAIN_LIST, TEST_LIST = "features_rgb.csv", "features_rgbtest.csv"
LAYOUTS = ("fgclip", "vadclip")
NORMAL_FOLDER_PREFIXES = ("normal", "training_normal", "testing_normal")
FEATURE_LAYOUT = (
    "one float32 array per video and crop, shape [num_snippets, D]: row s is the clip embedding of native frames "
    "[16 s, min(16 s + 16, N)) (see 'snippet'); fgclip layout: <stem>.npy (1 crop) or <stem>__k.npy; vadclip "
    "layout: <Class>/<stem>__k.npy with the list CSVs path,label (fgclip.evaluation.export)"
)


class ExportError(ValueError):
    """An export folder, its settings or its shards are inconsistent; the message names the file."""


@dataclass(frozen=True)
class FeaturePlan:
    """Where the arrays of a video go and how many snippets they hold."""

    layout: str
    crops: CropSpec
    partial_snippet: str = "keep"
    test_crop: int = 0
    snippet_frames: int = SnippetOptions.snippet_frames

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.partial_snippet not in ("keep", "drop"):
            raise ValueError(f"partial_snippet must be 'keep' or 'drop', got {self.partial_snippet!r}")
        if not 0 <= self.test_crop < self.crops.count:
            raise ValueError(f"test crop {self.test_crop} is not among the {self.crops.count} crop(s)")

    def files(self, video: Path) -> list[str]:
        """Paths, relative to the output folder, of the video's arrays in crop order."""
        if self.layout == "fgclip":
            if self.crops.count == 1:
                return [f"{video.stem}.npy"]
            return [f"{video.stem}__{k}.npy" for k in range(self.crops.count)]
        return [f"{video.parent.name}/{video.stem}__{k}.npy" for k in range(self.crops.count)]

    def num_snippets(self, num_frames: int) -> int:
        whole, rest = divmod(num_frames, self.snippet_frames)
        return whole + (rest > 0) if self.partial_snippet == "keep" else whole

    def last_snippet_frames(self, num_frames: int) -> int:
        """Frames of the video's last snippet (1..16; 16 when dropped short snippets leave whole ones only)."""
        rest = num_frames % self.snippet_frames
        return rest if rest and self.partial_snippet == "keep" else self.snippet_frames


def video_class(video: Path) -> str:
    """The label column of the list CSVs: the video's folder, `Normal` for UCF-Crime's normal folders."""
    folder = video.parent.name
    return NORMAL_CLASS if folder.lower().startswith(NORMAL_FOLDER_PREFIXES) else folder


def snippet_definition(snippet_frames: int, frames_per_snippet: int, partial_snippet: str) -> dict:
    """What `features.json` says about how one row was made (module docstring)."""
    last = {
        "keep": "embedded from frames sampled inside the remaining 1..15 frames: num_snippets = ceil(N / 16)",
        "drop": "omitted: num_snippets = floor(N / 16) (whole snippets only, as RTFM / VadCLIP)",
    }[partial_snippet]
    return {
        "snippet_frames": snippet_frames,
        "frames_per_snippet": frames_per_snippet,
        "sampling": "bin centres: frame start + floor((j + 0.5) / F * length), j = 0..F-1",
        "pooling": "vision tower + visual_projection per frame, L2-normalised; the model's temporal module "
        "(clip_embeddings) pools the F frames; L2-normalised again",
        "short_last_snippet": last.replace("16", str(snippet_frames)),
    }


def atomic_save(path: Path, array: np.ndarray) -> None:
    """`np.save` to `<path>.partial`, then rename: readers see the whole file or none."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        np.save(handle, array)
    os.replace(partial, path)


def atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(partial, path)


def atomic_write_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def export_features(
    model,
    videos: list[Path],
    out_dir: str | Path,
    frames,
    options: SnippetOptions = DEFAULT_SNIPPETS,
    *,
    partial_snippet: str = "keep",
    skip_existing: bool = False,
    meta: dict | None = None,
    progress: bool = True,
    crops: CropSpec | None = None,
    layout: str = "fgclip",
    test_crop: int = 0,
    shard: Shard | None = None,
) -> Path:
    """Export the videos of this process's shard (module docstring); returns the metadata file written
    (`features.json`, or `features.shard-I-of-N.json` for an explicit shard; under torchrun rank 0's file)."""
    crops = crops or CropSpec(1, frames.image_size, frames.image_size)
    if crops.resize_side != frames.image_size:
        raise ValueError(f"the frames are read at {frames.image_size}, the crops need {crops.resize_side}")
    plan = FeaturePlan(layout, crops, partial_snippet, test_crop, options.snippet_frames)
    explicit = shard is not None and shard.count > 1
    shard = shard if explicit else Shard.of_rank()
    _check_unique_files(videos, plan)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**(meta or {}), "layout": layout, "crops": crops.describe(), "partial_snippet": partial_snippet,
                "test_crop": test_crop, "snippet": snippet_definition(options.snippet_frames, options.frames_per_snippet, partial_snippet)}  # fmt: skip
    _start(out, settings, skip_existing, shard)
    mine = [(p, videos[p]) for p in shard.positions(len(videos))]
    index, todo = {}, []
    for _, video in mine:
        entry = existing_entry(out, video, plan) if skip_existing else None
        if entry is None:
            todo.append(video)
        else:
            index[video.stem] = entry
    embedded = iter_video_snippets(model, todo, frames, options, crops=crops if crops.count > 1 else None)
    for snippets in tqdm(embedded, total=len(todo), desc="exporting features", disable=not progress):
        index[snippets.video.stem] = _write_video(out, snippets, plan)
    ordered = [
        (position, index[video.stem]) for position, video in mine
    ]  # input order, whatever finished first
    if explicit:
        return _write_shard(out, shard, settings, ordered)
    everything = [pair for part in gather_objects(ordered) for pair in part]  # every rank's videos
    if shard.index != 0:
        return out / FEATURES_FILE
    return write_description(out, settings, plan, [entry for _, entry in sorted(everything, key=_first)])


def _first(pair):
    return pair[0]


def _start(out: Path, settings: dict, skip_existing: bool, shard: Shard) -> None:
    """Write the settings first; on resume, refuse a folder exported with other ones."""
    path = out / SETTINGS_FILE
    if skip_existing and path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if changed:
            raise ExportError(
                f"{path}: this folder was exported with other settings ({', '.join(changed)}: "
                f"{ {k: before.get(k) for k in changed} } now { {k: settings.get(k) for k in changed} }); "
                "--skip-existing would mix them: use a new --out"
            )
    if shard.index == 0 or not path.is_file():
        atomic_write_text(path, json.dumps(settings, indent=2))


def existing_entry(out: Path, video: Path, plan: FeaturePlan) -> dict | None:
    """The metadata of a video whose arrays are all present and valid, rebuilt from them and the video;
    None when it must be (re)done -- a warning names the file when one exists but is torn or wrong."""
    paths = [out / name for name in plan.files(video)]
    if not any(p.is_file() for p in paths):
        return None
    frame_times = readable_frame_times(video)
    expected = plan.num_snippets(len(frame_times))
    dims = set()
    for path in paths:
        problem = _file_problem(path, expected)
        if problem:
            logger.warning("[fgclip] %s: %s; exporting %s again", path, problem, video)
            return None
        dims.add(np.load(path, mmap_mode="r").shape[1])
    if len(dims) > 1:
        logger.warning("[fgclip] %s: crops of different widths %s; exporting it again", video, sorted(dims))
        return None
    return _entry(video, plan, len(frame_times), video_fps(video, frame_times), expected)


def _file_problem(path: Path, expected_rows: int) -> str | None:
    if not path.is_file():
        return "missing (other crops of the video exist)"
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:
        return f"unreadable, torn by an interrupted write? ({error})"
    if array.dtype != np.float32 or array.ndim != 2:
        return f"dtype {array.dtype} shape {array.shape}, expected float32 [{expected_rows}, D]"
    if len(array) != expected_rows:
        return f"{len(array)} snippets, the video's frame count gives {expected_rows}"
    if not np.isfinite(array).all():
        return "non-finite values"
    return None


def _entry(video: Path, plan: FeaturePlan, num_frames: int, fps: float, num_snippets: int) -> dict:
    return {
        "video": str(video), "class": video_class(video), "num_frames": num_frames, "fps": fps,
        "num_snippets": num_snippets, "last_snippet_frames": plan.last_snippet_frames(num_frames),
        "files": plan.files(video),
    }  # fmt: skip


def _write_video(out: Path, snippets, plan: FeaturePlan) -> dict:
    layout = snippets.layout
    views = snippets.crop_embeds if snippets.crop_embeds is not None else snippets.embeds[None]  # (K, S, D)
    if plan.partial_snippet == "drop":
        views = views[:, : layout.num_full_snippets]
    for name, view in zip(plan.files(snippets.video), views, strict=True):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_save(out / name, view.astype(np.float32))
    return _entry(snippets.video, plan, layout.num_frames, snippets.fps, int(views.shape[1]))


def write_description(out: Path, settings: dict, plan: FeaturePlan, entries: list[dict]) -> Path:
    """`features.json` (and the vadclip list CSVs) over every video, in input order."""
    dims = {int(np.load(out / e["files"][0], mmap_mode="r").shape[1]) for e in entries}
    if len(dims) > 1:
        raise ExportError(
            f"{out}: videos of different feature dimensions {sorted(dims)}; export into a new --out"
        )
    snippet = settings["snippet"]
    videos = {Path(e["video"]).stem: e for e in entries}
    description = {
        **settings,
        "format": FEATURE_LAYOUT,
        "dim": dims.pop() if dims else None,
        "normalised": True,
        "dtype": "float32",
        "snippet_frames": snippet["snippet_frames"],
        "frames_per_snippet": snippet["frames_per_snippet"],
        "videos": videos,
    }
    if plan.layout == "vadclip":
        _write_lists(out, entries, plan.test_crop)
    path = out / FEATURES_FILE
    atomic_write_text(path, json.dumps(description, indent=2))
    return path


def _write_lists(out: Path, entries: list[dict], test_crop: int) -> None:
    root = out.resolve()
    for name, crops in ((TRAIN_LIST, None), (TEST_LIST, test_crop)):
        rows = ["path,label"]
        for entry in entries:
            files = entry["files"] if crops is None else [entry["files"][crops]]
            rows += [_csv_row(str(root / f), entry["class"]) for f in files]
        atomic_write_text(out / name, "\n".join(rows) + "\n")


def _csv_row(*values: str) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)  # quotes a path holding a comma
    return buffer.getvalue()


def _write_shard(out: Path, shard: Shard, settings: dict, ordered: list[tuple[int, dict]]) -> Path:
    path = out / f"features.shard-{shard.index}-of-{shard.count}.json"
    atomic_write_text(path, json.dumps({"settings": settings, "shard": [shard.index, shard.count],
                                        "videos": [[p, e] for p, e in ordered]}, indent=2))  # fmt: skip
    return path


def read_shard_files(out: Path, stem: str, error: type[Exception], *, hint: str) -> dict[int, dict]:
    """`{index: document}` of every `STEM.shard-I-of-N.json` in `out`, refused (`error`, naming the folder and the
    shard) unless all N shards of one count are there and were made with shard 0's settings."""
    pattern = re.compile(rf"{re.escape(stem)}\.shard-(\d+)-of-(\d+)\.json$")
    found = {}
    for path in sorted(out.glob(f"{stem}.shard-*-of-*.json")):
        match = pattern.search(path.name)
        found[(int(match[1]), int(match[2]))] = json.loads(path.read_text())
    if not found:
        raise error(f"{out}: no {stem}.shard-I-of-N.json files ({hint})")
    counts = {count for _, count in found}
    if len(counts) > 1:
        raise error(f"{out}: {stem} shards of different shard counts {sorted(counts)}; remove the stale ones")
    count = counts.pop()
    missing = [i for i in range(count) if (i, count) not in found]
    if missing:
        raise error(
            f"{out}: {stem} shards {missing} of {count} have not finished (no {stem}.shard-I-of-{count}.json)"
        )
    shards = {index: document for (index, _), document in found.items()}
    for index, document in shards.items():
        if document["settings"] != shards[0]["settings"]:
            raise error(
                f"{out}: {stem}.shard-{index}-of-{count}.json was made with other settings than shard 0"
            )
    return shards


def merge_feature_shards(out_dir: str | Path) -> Path:
    """Join the `features.shard-I-of-N.json` of an export folder into its `features.json` (module docstring)."""
    out = Path(out_dir)
    shards = read_shard_files(out, "features", ExportError, hint="export with --shard I/N first")
    settings = shards[0]["settings"]
    entries = sorted((p, e) for data in shards.values() for p, e in data["videos"])
    crops = settings["crops"]
    plan = FeaturePlan(
        settings["layout"], CropSpec(crops["count"], crops["crop_side"], crops["resize_side"]),
        settings["partial_snippet"], settings["test_crop"], settings["snippet"]["snippet_frames"],
    )  # fmt: skip
    return write_description(out, settings, plan, [e for _, e in entries])


def _check_unique_files(videos: list[Path], plan: FeaturePlan) -> None:
    seen: dict[str, Path] = {}
    for video in videos:
        for name in plan.files(video):
            if seen.setdefault(name, video) != video:
                raise ValueError(f"two videos would write {name}: {seen[name]} and {video}")
        if seen.setdefault(f"stem:{video.stem}", video) != video:
            raise ValueError(
                f"two videos share the stem {video.stem}: {seen[f'stem:{video.stem}']} and {video}"
            )
