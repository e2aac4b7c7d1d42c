"""Synthetic snippet features in the `fgclip export-features` layout, with a planted anomaly (tests, docs).

Each video has its own scene direction; every snippet is that direction plus noise, L2-normalised. An
abnormal video adds `strength` x a fixed *event direction* to a few consecutive snippets -- its annotated
anomaly. Only video labels are given to the head, so learning it means finding the direction and where it is.

Writes into `root`: `features/` (`<stem>.npy` + `features.json`, exactly as export writes them), `train.txt`
and `test.txt` (UCF-Crime lists, `Class/Name.mp4`), `annotations.txt` (UCF-Crime temporal annotation,
native frames, 0-based, end inclusive).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgclip.evaluation.export import FEATURE_LAYOUT

SNIPPET_FRAMES = 16


@dataclass(frozen=True)
class PlantedFeatures:
    features: Path
    train_list: Path
    test_list: Path
    annotations: Path


def write_planted_features(
    root: str | Path,
    *,
    seed: int = 0,
    num_train: int = 40,
    num_test: int = 20,
    dim: int = 32,
    snippets: tuple[int, int] = (20, 60),
    event_snippets: tuple[int, int] = (3, 6),
    strength: float = 0.8,
    noise: float = 0.5,
) -> PlantedFeatures:
    """Half of the train and of the test videos are abnormal (class `Planted`), the others `Normal`."""
    root = Path(root)
    out = root / "features"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    event = _unit(rng.normal(size=dim))  # (D,)
    videos, lists, annotations = {}, {"train": [], "test": []}, []
    for split, count in (("train", num_train), ("test", num_test)):
        for index in range(count):
            abnormal = index % 2 == 1
            label = "Planted" if abnormal else "Normal"
            name = f"{label}_{split}{index:04d}_x264"
            features, segment, num_frames = _video(
                rng, event, dim, snippets, event_snippets, strength, noise, abnormal
            )
            np.save(out / f"{name}.npy", features)
            videos[name] = {"video": f"{label}/{name}.mp4", "num_frames": num_frames, "fps": 25.0,
                            "num_snippets": len(features), "last_snippet_frames": num_frames - SNIPPET_FRAMES * (len(features) - 1)}  # fmt: skip
            lists[split].append(f"{label}/{name}.mp4")
            if split == "test":
                s, e = segment if segment else (-1, -1)
                annotations.append(f"{name}  {label}  {s}  {e}  -1  -1")
    description = {"checkpoint": "synthetic planted features", "layout": FEATURE_LAYOUT, "dim": dim,
                   "normalised": True, "dtype": "float32", "snippet_frames": SNIPPET_FRAMES,
                   "frames_per_snippet": 8, "partial_snippet": "keep", "videos": videos}  # fmt: skip
    (out / "features.json").write_text(json.dumps(description, indent=2))
    paths = PlantedFeatures(out, root / "train.txt", root / "test.txt", root / "annotations.txt")
    paths.train_list.write_text("\n".join(lists["train"]) + "\n")
    paths.test_list.write_text("\n".join(lists["test"]) + "\n")
    paths.annotations.write_text("\n".join(annotations) + "\n")
    return paths


def _video(rng, event, dim, snippets, event_snippets, strength, noise, abnormal):
    count = int(rng.integers(snippets[0], snippets[1] + 1))
    num_frames = SNIPPET_FRAMES * count - int(rng.integers(0, SNIPPET_FRAMES))  # a short last snippet
    scene = _unit(rng.normal(size=dim))
    features = scene[None, :] + noise * rng.normal(size=(count, dim)) / np.sqrt(dim)  # (S, D)
    segment = None
    if abnormal:
        length = int(rng.integers(event_snippets[0], event_snippets[1] + 1))
        start = int(rng.integers(0, count - length))
        features[start : start + length] += strength * event
        segment = (SNIPPET_FRAMES * start, SNIPPET_FRAMES * (start + length) - 1)  # native frames, inclusive
    return _unit(features).astype(np.float32), segment, num_frames


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass(frozen=True)
class PlantedVadclipTree:
    root: Path  # Class/Name__k.npy
    train_list: Path  # every crop, VadCLIP's ucf_CLIP_rgb.csv form
    test_list: Path  # crop `test_crop` only, ucf_CLIP_rgbtest.csv form
    annotations: Path


def write_planted_vadclip_tree(
    root: str | Path,
    *,
    seed: int = 0,
    num_train: int = 40,
    num_test: int = 20,
    dim: int = 32,
    crops: int = 10,
    test_crop: int = 5,
    crop_noise: float = 0.2,
    written_prefix: str = "/home/someone/UCFClipFeatures",
    **planted,
) -> PlantedVadclipTree:
    """The planted features above in VadCLIP's layout: `root/Class/Name__k.npy` for k < `crops` (each crop the
    video's features plus its own noise, renormalised), list CSVs whose paths start with `written_prefix` (as
    VadCLIP's carry its authors' folder: read them with `feature_root=root`), and the annotation file. A video
    is 16 x S frames long here, as VadCLIP assumes."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    event = _unit(rng.normal(size=dim))  # (D,)
    rows: dict[str, list[str]] = {"train": ["path,label"], "test": ["path,label"]}
    annotations = []
    for split, count in (("train", num_train), ("test", num_test)):
        for index in range(count):
            abnormal = index % 2 == 1
            folder, label = (
                ("Planted", "Planted")
                if abnormal
                else (f"{split.title()}ing_Normal_Videos_Anomaly", "Normal")
            )
            name = f"{label}_{split}{index:04d}_x264"
            features, segment, _ = _video(rng, event, dim, planted.get("snippets", (20, 60)),
                                          planted.get("event_snippets", (3, 6)), planted.get("strength", 0.8),
                                          planted.get("noise", 0.5), abnormal)  # fmt: skip
            (root / folder).mkdir(parents=True, exist_ok=True)
            for k in range(crops):
                view = _unit(features + crop_noise * rng.normal(size=features.shape) / np.sqrt(dim))
                np.save(root / folder / f"{name}__{k}.npy", view.astype(np.float32))
                if split == "train" or k == test_crop:
                    rows[split].append(f"{written_prefix}/{folder}/{name}__{k}.npy,{label}")
            if split == "test":
                s, e = segment if segment else (-1, -1)
                annotations.append(f"{name}  {label}  {s}  {e}  -1  -1")
    tree = PlantedVadclipTree(
        root, root / "ucf_CLIP_rgb.csv", root / "ucf_CLIP_rgbtest.csv", root / "annotations.txt"
    )
    tree.train_list.write_text("\n".join(rows["train"]) + "\n")
    tree.test_list.write_text("\n".join(rows["test"]) + "\n")
    tree.annotations.write_text("\n".join(annotations) + "\n")
    return tree
