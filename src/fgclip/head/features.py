"""Read what `fgclip export-features` wrote, and the video-level labels a weakly supervised head trains on.

Feature folder (`fgclip.evaluation.inference.export_features`, `FEATURE_LAYOUT`): one `<stem>.npy` float32 array of
shape [num_snippets, D] per video and `features.json` with `snippet_frames`, `partial_snippet` (`keep`:
num_snippets = ceil(N / 16), the last snippet covers the remaining 1..16 frames; `drop`: floor(N / 16)) and,
per video stem, `num_frames` (native frame count) and `fps`. Both files are read and checked against each
other, so a feature file that does not match its video's frame count fails here, not as a shifted ground truth.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgclip.evaluation.anomaly import NORMAL_CLASS

FEATURES_FILE = "features.json"
NORMAL_FOLDER_PREFIXES = ("normal", "training_normal", "testing_normal")


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
    """Every video of one export folder."""

    root: Path
    dim: int
    snippet_frames: int
    partial_snippet: str
    description: dict  # features.json as written (checkpoint, image_size, layout, ...)
    videos: dict[str, VideoFeatures]

    def select(self, names: list[str], what: str) -> list[VideoFeatures]:
        """The named videos in order; an error that lists the missing ones (`what` says which list named them)."""
        missing = [n for n in names if n not in self.videos]
        if missing:
            raise FeatureError(
                f"{self.root}: no features for {len(missing)} video(s) of {what}, e.g. {missing[:5]} "
                f"(the folder has {len(self.videos)}; export them with `fgclip export-features`)"
            )
        return [self.videos[n] for n in names]


def read_features(root: str | Path) -> FeatureSet:
    """Load an export folder; every video of `features.json` must have a `.npy` of the described shape."""
    root = Path(root)
    description = _read_description(root)
    snippet_frames = int(description.get("snippet_frames", 0))
    partial = description.get("partial_snippet")
    if snippet_frames < 1 or partial not in ("keep", "drop"):
        raise FeatureError(
            f"{root / FEATURES_FILE}: needs 'snippet_frames' >= 1 and 'partial_snippet' keep|drop, got "
            f"{snippet_frames!r} and {partial!r}"
        )
    videos = {
        stem: _read_video(root, stem, entry, snippet_frames, partial)
        for stem, entry in sorted(description["videos"].items())
    }
    dims = {v.features.shape[1] for v in videos.values()}
    if len(dims) != 1:
        raise FeatureError(f"{root}: videos have different feature dimensions {sorted(dims)}")
    return FeatureSet(root, dims.pop(), snippet_frames, partial, description, videos)


def _read_description(root: Path) -> dict:
    path = root / FEATURES_FILE
    if not path.is_file():
        raise FeatureError(
            f"{root}: no {FEATURES_FILE}; is this a folder written by `fgclip export-features`?"
        )
    try:
        description = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise FeatureError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(description.get("videos"), dict) or not description["videos"]:
        raise FeatureError(f"{path}: 'videos' must be a non-empty mapping of stem -> description")
    return description


def _read_video(root: Path, stem: str, entry: dict, snippet_frames: int, partial: str) -> VideoFeatures:
    where = f"{root / FEATURES_FILE}: video {stem!r}"
    if "num_frames" not in entry or "fps" not in entry:
        raise FeatureError(
            f"{where} has no num_frames/fps ({entry.get('skipped') or 'incomplete entry'}: exported with "
            "--skip-existing over an older folder?); export it again without --skip-existing"
        )
    path = root / f"{stem}.npy"
    if not path.is_file():
        raise FeatureError(f"{where}: {path.name} is missing")
    features = np.load(path)
    num_frames = int(entry["num_frames"])
    expected = -(-num_frames // snippet_frames) if partial == "keep" else num_frames // snippet_frames
    if features.ndim != 2 or len(features) != expected or len(features) == 0:
        raise FeatureError(
            f"{path}: shape {features.shape}, but {num_frames} native frames in {snippet_frames}-frame snippets "
            f"(partial_snippet={partial}) make [{expected}, D] (and at least one snippet)"
        )
    if not np.isfinite(features).all():
        raise FeatureError(f"{path}: non-finite values")
    return VideoFeatures(
        stem, features.astype(np.float32), num_frames, float(entry["fps"]), snippet_frames, partial
    )


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
