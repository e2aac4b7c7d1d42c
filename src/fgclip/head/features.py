"""Read snippet features (fgclip's export or the field's VadCLIP layout) and the video-level labels a head trains on.

Two sources, one `FeatureSet`:

- **An export folder** (`fgclip export-features`, `fgclip.evaluation.export`): `features.json` with
  `snippet_frames`, `partial_snippet` (`keep`: num_snippets = ceil(N / 16), the last snippet covers the
  remaining 1..16 frames; `drop`: floor(N / 16)) and, per video stem, `num_frames` (native frame count), `fps`
  and `files` (one float32 [num_snippets, D] array per crop, in either layout; older folders: `<stem>.npy`).
  Both are read and checked against each other, so a feature file that does not match its video's frame count
  fails here, not as a shifted ground truth.
- **A list CSV `path,label`** in the form of VadCLIP's `list/ucf_CLIP_rgb.csv` / `ucf_CLIP_rgbtest.csv`: one
  row per `.../Class/Name__k.npy` file (crop k of video Name), `label` the class, `Normal` for normal videos. The
  CSV gives the labels too. Its paths are used as written, relative ones against the CSV's folder; with
  `feature_root` they are `feature_root/Class/Name__k.npy` instead (VadCLIP's CSVs carry its authors' absolute
  paths). No frame count exists there, so each video is taken as **N = 16 x S frames** (S = its rows), the
  length VadCLIP's own `make_gt_ucf.py` builds its ground truth on; the fps is unknown (timelines assume 30,
  UCF-Crime's rate).

A `--layout vadclip` export folder also carries its labels (each video's class folder, `Normal` for the normal
ones, as its CSVs); other folders need a label list.

Crops: every view of a video is kept (`FeatureSet.views`); `FeatureSet.videos` holds one view per video, the
`crop` chosen for validation and testing (VadCLIP trains on all ten crops and tests on one). A single-crop
source needs no choice; otherwise `crop` defaults to the export's `test_crop` and must be given for a CSV that
lists several crops.

Video-level labels, one of:
- a UCF-Crime list (`Anomaly_Train.txt`): `Class/Name.mp4` per line; the class is the folder, and a video is
  normal when the folder starts with `Normal` or `Training_Normal` (UCF-Crime's `Training_Normal_Videos_Anomaly`,
  `Testing_Normal_Videos_Anomaly`, `Normal_Videos_event`; the synthetic benchmark's `Normal`);
- a CSV with a header `video,label[,class]`, or a JSON list of `{"video", "label", "class"?}` objects: `label`
  is 0 / 1 or `normal` / `abnormal`, `video` a stem or any path (its stem is used).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgclip.evaluation.anomaly import NORMAL_CLASS
from fgclip.evaluation.export import FEATURES_FILE, NORMAL_FOLDER_PREFIXES

LIST_SNIPPET_FRAMES = 16  # VadCLIP's snippet length: N = 16 x S for features read from a list CSV
LIST_FPS = 30.0  # unknown for a list CSV; only the timelines' time axis uses it
_CROP_FILE = re.compile(r"^(?P<name>.+)__(?P<crop>\d+)\.npy$")


class FeatureError(ValueError):
    """Features, their description or their labels are wrong or do not match; the message names file and video."""


@dataclass(frozen=True)
class VideoFeatures:
    """Snippet features of one exported video."""

    name: str  # video stem, e.g. "Abuse028_x264"
    features: np.ndarray  # (S, D) float32
    num_frames: int  # native frames N of the video
    fps: float
    snippet_frames: int  # 16: snippet s covers native frames [16 s, min(16 s + 16, N))
    partial_snippet: str  # "keep" (S = ceil(N / 16)) or "drop" (S = floor(N / 16))
    crop: int = 0  # which view of the video (fgclip.data.crops order)

    @property
    def num_snippets(self) -> int:
        return len(self.features)


@dataclass(frozen=True)
class VideoLabel:
    name: str  # video stem
    abnormal: bool
    label_class: str  # "Normal" for normal videos; the anomaly class when known, else "Abnormal"


@dataclass(frozen=True)
class FeatureSet:
    """Every video of one export folder or list CSV."""

    root: Path
    dim: int
    snippet_frames: int
    partial_snippet: str
    description: dict  # features.json as written (checkpoint, image_size, layout, ...), or what a CSV implies
    videos: dict[str, VideoFeatures]  # one view per video: the chosen crop
    views: dict[str, list[VideoFeatures]] | None = None  # every crop per video (None: `videos` only)
    labels: dict[str, VideoLabel] | None = None  # from a list CSV's label column
    crop: int = 0

    def select(self, names: list[str], what: str) -> list[VideoFeatures]:
        """The named videos in order; an error that lists the missing ones (`what` says which list named them)."""
        self._check_present(names, what)
        return [self.videos[n] for n in names]

    def training_views(
        self, names: list[str], what: str, crops: list[int] | None = None
    ) -> list[VideoFeatures]:
        """Every view (or the `crops` views) of the named videos: VadCLIP trains on each crop as a sample."""
        self._check_present(names, what)
        views = self.views or {n: [v] for n, v in self.videos.items()}
        chosen = [v for n in names for v in views[n] if crops is None or v.crop in crops]
        if crops is not None:
            held = sorted({v.crop for n in names for v in views[n]})
            if not set(crops) <= set(held):
                raise FeatureError(
                    f"{self.root}: training crops {sorted(crops)} asked for, the features hold {held}"
                )
        return chosen

    def _check_present(self, names: list[str], what: str) -> None:
        missing = [n for n in names if n not in self.videos]
        if missing:
            raise FeatureError(
                f"{self.root}: no features for {len(missing)} video(s) of {what}, e.g. {missing[:5]} "
                f"(the folder has {len(self.videos)}; export them with `fgclip export-features`)"
            )


def read_features(
    root: str | Path, crop: int | None = None, feature_root: str | Path | None = None
) -> FeatureSet:
    """An export folder, or a list CSV `path,label` (module docstring); `crop` picks the view of `videos`."""
    root = Path(root)
    if root.suffix.lower() == ".csv":
        return read_feature_list(root, crop, feature_root)
    if feature_root is not None:
        raise FeatureError(f"{root}: --feature-root applies to a list CSV, not to an export folder")
    description = _read_description(root)
    snippet_frames = int(description.get("snippet_frames", 0))
    partial = description.get("partial_snippet")
    if snippet_frames < 1 or partial not in ("keep", "drop"):
        raise FeatureError(
            f"{root / FEATURES_FILE}: needs 'snippet_frames' >= 1 and 'partial_snippet' keep|drop, got "
            f"{snippet_frames!r} and {partial!r}"
        )
    views = {
        stem: _read_video(root, stem, entry, snippet_frames, partial)
        for stem, entry in sorted(description["videos"].items())
    }
    chosen = _chosen_crop(root, views, description.get("test_crop") if crop is None else crop)
    features = _feature_set(root, snippet_frames, partial, description, views, chosen)
    if description.get("layout") != "vadclip":
        return features
    # a vadclip-layout export labels its videos by their class folder, as its list CSVs do
    labels = {stem: _class_label(stem, entry["class"]) for stem, entry in description["videos"].items()}
    return FeatureSet(**{**features.__dict__, "labels": labels})


def _class_label(name: str, label: str) -> VideoLabel:
    abnormal = label.lower() != NORMAL_CLASS.lower()
    return VideoLabel(name, abnormal, label if abnormal else NORMAL_CLASS)


def read_feature_list(
    path: Path, crop: int | None = None, feature_root: str | Path | None = None
) -> FeatureSet:
    """A VadCLIP list CSV: rows `.../Class/Name__k.npy,label`, N = 16 x S frames per video (module docstring)."""
    files: dict[str, dict[int, Path]] = {}
    labels: dict[str, VideoLabel] = {}
    for where, file, label in _list_rows(path, feature_root):
        match = _CROP_FILE.match(file.name)
        if match is None:
            raise FeatureError(f"{where}: {file.name!r} is not Name__k.npy (k = the crop)")
        name, index = match["name"], int(match["crop"])
        if index in files.setdefault(name, {}):
            raise FeatureError(f"{where}: crop {index} of {name} is listed twice")
        files[name][index] = file
        if labels.setdefault(name, label).abnormal != label.abnormal:
            raise FeatureError(f"{where}: {name} is labelled both normal and abnormal")
    if not files:
        raise FeatureError(f"{path}: no rows")
    views = {
        name: [_list_view(path, name, k, crops[k]) for k in sorted(crops)]
        for name, crops in sorted(files.items())
    }
    description = {
        "source": f"list CSV {path}",
        "num_frames": "16 x S per video (no frame count in a list CSV; VadCLIP's make_gt_ucf.py uses the same)",
        "fps": f"unknown; timelines assume {LIST_FPS:g}",
    }
    chosen = _chosen_crop(path, views, crop)
    features = _feature_set(path, LIST_SNIPPET_FRAMES, "keep", description, views, chosen)
    return FeatureSet(**{**features.__dict__, "labels": labels})


def _list_rows(path: Path, feature_root):
    if not path.is_file():
        raise FeatureError(f"feature list not found: {path}")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise FeatureError(f"{path}: the header must be 'path,label' (VadCLIP's list CSV form)")
        for number, row in enumerate(reader, 2):
            where = f"{path}:{number}"
            written, label = Path(row["path"] or ""), (row["label"] or "").strip()
            if not written.name or not label:
                raise FeatureError(f"{where}: empty 'path' or 'label'")
            if feature_root is not None:
                file = Path(feature_root) / written.parent.name / written.name
            else:
                file = written if written.is_absolute() else path.parent / written
            if not file.is_file():
                hint = (
                    "" if feature_root is not None else " (pass --feature-root DIR holding Class/Name__k.npy)"
                )
                raise FeatureError(f"{where}: feature file {file} not found{hint}")
            abnormal = label.lower() != NORMAL_CLASS.lower()
            stem = _CROP_FILE.match(written.name)
            yield (
                where,
                file,
                VideoLabel(
                    stem["name"] if stem else written.stem, abnormal, label if abnormal else NORMAL_CLASS
                ),
            )


def _list_view(path: Path, name: str, crop: int, file: Path) -> VideoFeatures:
    features = _checked_array(file)
    if len(features) == 0:
        raise FeatureError(f"{file}: no snippets")
    return VideoFeatures(
        name, features, LIST_SNIPPET_FRAMES * len(features), LIST_FPS, LIST_SNIPPET_FRAMES, "keep", crop
    )


def _checked_array(file: Path) -> np.ndarray:
    """A float32 (S, D) array, memory-mapped (ten crops of UCF-Crime's training set do not fit in RAM as copies)."""
    try:
        features = np.load(file, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:
        raise FeatureError(f"{file}: unreadable ({error}); export it again") from None
    if features.ndim != 2 or features.dtype != np.float32:
        raise FeatureError(f"{file}: shape {features.shape} dtype {features.dtype}, expected float32 [S, D]")
    if not np.isfinite(features).all():
        raise FeatureError(f"{file}: non-finite values")
    return features


def _chosen_crop(root: Path, views: dict[str, list[VideoFeatures]], crop: int | None) -> int:
    held = sorted({v.crop for vs in views.values() for v in vs})
    if crop is None:
        if len(held) > 1:
            raise FeatureError(f"{root}: holds crops {held}; choose the validation / test one with --crop")
        return held[0]
    missing = [n for n, vs in views.items() if crop not in {v.crop for v in vs}]
    if missing:
        raise FeatureError(f"{root}: crop {crop} is missing for {len(missing)} video(s), e.g. {missing[:5]}")
    return crop


def _feature_set(root, snippet_frames, partial, description, views, crop: int) -> FeatureSet:
    dims = {v.features.shape[1] for vs in views.values() for v in vs}
    if len(dims) != 1:
        raise FeatureError(f"{root}: videos have different feature dimensions {sorted(dims)}")
    for name, vs in views.items():
        if len({len(v.features) for v in vs}) != 1:
            raise FeatureError(
                f"{root}: the crops of {name} hold different snippet counts {[len(v.features) for v in vs]}"
            )
    videos = {n: next(v for v in vs if v.crop == crop) for n, vs in views.items()}
    return FeatureSet(root, dims.pop(), snippet_frames, partial, description, videos, views, None, crop)


def _read_description(root: Path) -> dict:
    path = root / FEATURES_FILE
    if not path.is_file():
        raise FeatureError(
            f"{root}: no {FEATURES_FILE}; is this a folder written by `fgclip export-features`?"
        )
    try:
        description = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, nested too deeply, a huge number
        raise FeatureError(f"{path}: damaged, not valid JSON ({error}); export the features again") from error
    if not isinstance(description, dict):
        raise FeatureError(
            f"{path}: damaged: a JSON {type(description).__name__}, not an object; export again"
        )
    if not isinstance(description.get("videos"), dict) or not description["videos"]:
        raise FeatureError(f"{path}: 'videos' must be a non-empty mapping of stem -> description")
    return description


def _read_video(root: Path, stem: str, entry: dict, snippet_frames: int, partial: str) -> list[VideoFeatures]:
    """Every crop of one video of `features.json`."""
    where = f"{root / FEATURES_FILE}: video {stem!r}"
    if not isinstance(entry, dict):
        raise FeatureError(f"{where} is a {type(entry).__name__}, not an object; export it again")
    if "num_frames" not in entry or "fps" not in entry:
        raise FeatureError(
            f"{where} has no num_frames/fps ({entry.get('skipped') or 'incomplete entry'}: exported with "
            "--skip-existing by an fgclip older than the resumable export?); export it again"
        )
    num_frames, fps, files = entry["num_frames"], entry["fps"], entry.get("files", [f"{stem}.npy"])
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 0:
        raise FeatureError(f"{where}: num_frames {num_frames!r} is not a frame count; export it again")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < float("inf"):
        raise FeatureError(f"{where}: fps {fps!r} is not a positive frame rate; export it again")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        raise FeatureError(f"{where}: files {files!r} is not a list of .npy names; export it again")
    expected = -(-num_frames // snippet_frames) if partial == "keep" else num_frames // snippet_frames
    views = []
    for crop, name in enumerate(files):
        path = root / name
        if not path.is_file():
            raise FeatureError(f"{where}: {name} is missing")
        features = _checked_array(path)
        if len(features) != expected or len(features) == 0:
            raise FeatureError(
                f"{path}: shape {features.shape}, but {num_frames} native frames in {snippet_frames}-frame snippets "
                f"(partial_snippet={partial}) make [{expected}, D] (and at least one snippet)"
            )
        views.append(
            VideoFeatures(stem, features, num_frames, float(entry["fps"]), snippet_frames, partial, crop)
        )
    return views


def labels_for(features: FeatureSet, path: str | Path | None, option: str) -> dict[str, VideoLabel]:
    """The labels of `path` when given, else those of the features' list CSV."""
    if path is not None:
        return read_labels(path)
    if features.labels is None:
        raise FeatureError(
            f"{features.root} is an export folder without labels: pass {option} (the video list)"
        )
    return features.labels


def parse_crops(text: str | None) -> list[int] | None:
    """`all` (None: every crop) or a comma list `0,5`."""
    if text is None or text.strip() == "all":
        return None
    try:
        return sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise FeatureError(f"--train-crops must be 'all' or crop numbers like 0,5; got {text!r}") from None


def read_labels(path: str | Path) -> dict[str, VideoLabel]:
    """Video-level labels from a UCF-Crime list, a CSV or a JSON file (module docstring), keyed by stem."""
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"label file not found: {path}")
    if path.suffix.lower() == ".json":
        rows = _json_rows(path)
    elif path.suffix.lower() == ".csv":
        rows = _csv_rows(path)
    else:
        rows = _ucf_list_rows(path)
    labels: dict[str, VideoLabel] = {}
    for where, label in rows:
        if label.name in labels:
            raise FeatureError(f"{where}: video {label.name!r} is listed twice")
        labels[label.name] = label
    if not labels:
        raise FeatureError(f"{path}: no videos")
    return labels


def _ucf_list_rows(path: Path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        parts = Path(entry).parts
        if len(parts) < 2:
            raise FeatureError(f"{path}:{number}: expected 'Class/Name.mp4', got {entry!r}")
        folder = parts[-2]
        abnormal = not folder.lower().startswith(NORMAL_FOLDER_PREFIXES)
        yield f"{path}:{number}", VideoLabel(Path(entry).stem, abnormal, folder if abnormal else NORMAL_CLASS)


def _csv_rows(path: Path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"video", "label"} <= set(reader.fieldnames):
            raise FeatureError(f"{path}: the header must name 'video' and 'label' (and optionally 'class')")
        for number, row in enumerate(reader, 2):
            yield f"{path}:{number}", _label_row(row, f"{path}:{number}")


def _json_rows(path: Path):
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise FeatureError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, list):
        raise FeatureError(f"{path}: expected a list of {{'video', 'label', 'class'?}} objects")
    for index, row in enumerate(data):
        where = f"{path}: entry {index}"
        if not isinstance(row, dict):
            raise FeatureError(f"{where}: expected an object, got {type(row).__name__}")
        yield where, _label_row(row, where)


def _label_row(row: dict, where: str) -> VideoLabel:
    video, value = row.get("video"), str(row.get("label", "")).strip().lower()
    if not video:
        raise FeatureError(f"{where}: 'video' is empty")
    if value not in ("0", "1", "normal", "abnormal"):
        raise FeatureError(f"{where}: 'label' must be 0, 1, normal or abnormal, got {row.get('label')!r}")
    abnormal = value in ("1", "abnormal")
    label_class = (row.get("class") or "Abnormal") if abnormal else NORMAL_CLASS
    return VideoLabel(Path(str(video)).stem, abnormal, str(label_class))
