"""The synthetic video benchmark (DESIGN §10): moving coloured shapes, one of which may undergo an event.

Every concept is visible in single frames, so a tiny CLIP trained from scratch can learn it: the colour
(6 well-separated colours), the kind (circle, square, triangle) and the event while it lasts:

- ``Flashing``  ("flashes"):  every 2 frames the shape swaps between a white core with a rim of its colour
  and a core of its colour with a white rim (white never occurs otherwise);
- ``Growing``   ("grows"):    the shape is drawn at twice its size (its box doubles around its centre);
- ``Shattering`` ("shatters"): the shape is drawn as a flickering scatter of square fragments of its colour
  (4 px squares on a 6 px grid, 60% of them in every frame) inside its box.

World: ``size`` x ``size`` RGB videos (64 by default) at ``fps`` (25), ``duration_s`` (4 s), a dark
background with a mild per-video tint and low per-frame noise, 2-3 shapes with distinct colours moving
linearly and bouncing off the borders. Each shape's centre bounces inside a margin of its largest
half-size, so a box never leaves the frame (and is never clipped). About half of the videos are ``Normal``;
the others are split evenly between the three event classes, and in them one shape (the actor, drawn on
top) undergoes the event during an event span ``[t0, t1]`` of 1.2-2.0 s that lies on the annotation grid
and keeps at least 0.4 s away from both ends of the video. Every normal video is the *twin* of an abnormal
one (:func:`twin_of`): the same shapes on the same trajectories, without the event; twins share a split and
differ in caption only by the event, so object identity alone cannot tell them apart (``meta.json`` lists
the pairs; a sampler that puts twins in one batch makes the global loss learn the event).

Outputs of :func:`generate` (paths relative to ``out_dir``, which is the video root):

- ``videos/{Class}/{Class}{index:04d}_x264.mp4`` (index 1-based per class, like UCF-Crime);
- ``train.json``, ``test.json``: clip lists (DESIGN §7.1). Abnormal entries: ``timestamps: null`` and one
  region (the actor) whose track has a keyframe every ``keyframe_every`` annotation frames from ``t0`` to
  ``t1``, plus one on each side of every bounce, so linear interpolation is exact up to a fraction of a
  frame of motion; the last keyframe, at ``t1``, has ``"enabled": false``. Keyframe ``frame`` numbers are
  0-based integers on the annotation grid (``round(t * annotation_fps)``) and each box is the actor's true
  box at that instant. Normal entries: ``timestamps: [start_s, end_s]`` (the whole video or a sub-span of at
  least 2 s), ``box_infos: [[]]`` and one region caption describing the whole scene (the full frame);
- ``hard_negatives.json`` (DESIGN §7.2) for train and test entries: each negative changes exactly one
  attribute word (colour, kind or event; for normal regions one object's colour or kind) of the region
  caption, in place, so it differs from the caption in exactly one word position;
- ``test_annotation.txt``: UCF-Crime temporal annotation (DESIGN §7.5) of every test video,
  ``Name  Class  s1  e1  -1  -1`` with native frame numbers. **e1 is inclusive**, as in UCF-Crime: native
  frames ``s1..e1`` (``s1 = ceil(t0 * fps)``, ``e1 = floor(t1 * fps)``) are exactly the frames drawn with
  the event. Normal videos: ``Name  Normal  -1  -1  -1  -1``;
- ``test_list.txt``: ``Class/Name.mp4`` per test video (like UCF-Crime's ``Anomaly_Test.txt``; relative to
  ``out_dir/videos``);
- ``prompts.json``: the zero-shot prompt set ``{"normal": [...], "anomaly": {Class: [...]}}``. Prompts are
  written with the global-caption templates (the evaluator scores clip embeddings against them), over every
  two-object scene, so each prompt is in the training distribution;
- ``meta.json``: seed, parameters, counts, palette, vocabulary and generator version.

Captions, vocabulary and prompts: ``vocabulary.py``; one video's shapes, boxes and rendering: ``scene.py``.

Determinism: everything is drawn from ``numpy.random.default_rng`` seeded with ``(seed, ...)``; each video
has its own generator seeded with ``(seed, class id, index in class)``, so a video does not depend on the
generation order or on how many videos are generated; x264 runs single-threaded. The same seed gives
byte-identical JSON/text files and the same rendered frames. The mp4 bytes are not guaranteed: libx264's
output here depends on the process's history (the same frames encoded after generating another seed in the
same process came out different, >= 36.8 dB PSNR to the other encode), so tests compare decoded frames.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path

import numpy as np

from fgclip.synthetic.scene import GROW_FACTOR, Shape, VideoSpec, reflect, twin_of
from fgclip.synthetic.vocabulary import (
    COLOURS,
    EVENT_CLASSES,
    EVENT_VERBS,
    KINDS,
    NORMAL_CLASS,
    PALETTE,
    SYNTH_CLASSES,
    palette_order,
    prompt_set,
    synth_vocabulary,
)

GENERATOR_VERSION = "1"
MIN_SHAPES, MAX_SHAPES = 2, 3
SHAPE_SIZE_PX = (12.0, 18.0)  # box side at size 64 (scaled with the frame size)
GROWER_SIZE_PX = (12.0, 16.0)  # a growing actor doubles, so it starts smaller
SPEED_PX_S = (15.0, 35.0)  # at size 64
EVENT_LENGTH_S = (1.2, 2.0)
# `untrimmed_test`: UCF-Crime-like test videos, long and untrimmed with one short event. Durations of 30-45 s
# with a 4-8 s event give ~16 % abnormal frames in an abnormal video, so ~8 % of all test frames when half the
# test videos are normal: near UCF-Crime's test split (~7-8 % abnormal frames). meta.json records the share.
UNTRIMMED_DURATION_S = (30.0, 45.0)
UNTRIMMED_EVENT_S = (4.0, 8.0)
EVENT_MARGIN_S = 0.4  # an event keeps this far from both ends of the video
MIN_NORMAL_SPAN_S = 2.0
X264_OPTIONS = {"preset": "veryfast"}  # same quality at crf 18 for these tiny frames, twice as fast
MAX_HARD_NEGATIVES = 9  # the fewest single-attribute changes a caption has (abnormal: 5 + 2 + 2)


def _class_counts(num_videos: int) -> dict[str, int]:
    abnormal = num_videos // 2
    counts = {NORMAL_CLASS: num_videos - abnormal}
    for i, label in enumerate(EVENT_CLASSES):
        counts[label] = abnormal // len(EVENT_CLASSES) + (1 if i < abnormal % len(EVENT_CLASSES) else 0)
    return counts


def make_video_spec(
    seed: int,
    label: str,
    index: int,
    *,
    size: int = 64,
    fps: float = 25.0,
    duration_s: float = 4.0,
    annotation_fps: float = 25.0,
    untrimmed: bool = False,
) -> VideoSpec:
    """The video `index` (1-based) of class `label` for `seed` — independent of every other video.

    A normal video is the twin of an abnormal one (:func:`twin_of`): the same shapes on the same
    trajectories over the same background, without the event, with its own noise and clip span.
    `untrimmed`: a long test video (UNTRIMMED_DURATION_S, drawn per video in place of `duration_s`) with one
    UNTRIMMED_EVENT_S event, drawn from the video's own generators (its layout is chosen over the longer video,
    so its shapes are not those of the trimmed video of the same index); trimmed videos are unchanged.
    """
    if label == NORMAL_CLASS:
        twin = make_video_spec(
            seed, *twin_of(index), size=size, fps=fps, duration_s=duration_s, annotation_fps=annotation_fps,
            untrimmed=untrimmed,
        )  # fmt: skip
        rng = np.random.default_rng([seed, SYNTH_CLASSES.index(label), index])
        return replace(
            twin,
            name=f"{label}{index:04d}_x264",
            label=label,
            index=index,
            event_frames_ann=None,
            noise_seed=int(rng.integers(0, 2**31 - 1)),
            timestamps=_normal_span(rng, twin.duration_s),
        )
    rng = np.random.default_rng([seed, SYNTH_CLASSES.index(label), index])
    event_length_s = EVENT_LENGTH_S
    if untrimmed:  # its own generator: the main draws stay those of the trimmed video
        duration_s = float(
            np.random.default_rng([seed, 0x7E57, index, SYNTH_CLASSES.index(label)]).uniform(
                *UNTRIMMED_DURATION_S
            )
        )
        event_length_s = UNTRIMMED_EVENT_S
    scale = size / 64.0
    num_frames = max(1, round(duration_s * fps))
    duration = num_frames / fps
    abnormal = label != NORMAL_CLASS
    count = int(rng.integers(MIN_SHAPES, MAX_SHAPES + 1))
    colours = [COLOURS[i] for i in rng.choice(len(COLOURS), size=count, replace=False)]
    kinds = [KINDS[i] for i in rng.integers(0, len(KINDS), size=count)]
    tint = tuple(float(v) for v in rng.uniform(8.0, 28.0, size=3))
    noise_seed = int(rng.integers(0, 2**31 - 1))

    event_frames = None
    timestamps = None
    if abnormal:
        lo_f = math.ceil(EVENT_MARGIN_S * annotation_fps)
        hi_f = math.floor((duration - EVENT_MARGIN_S) * annotation_fps)
        if hi_f - lo_f < 1:
            raise ValueError(f"duration_s={duration_s} is too short for an event span")
        length = round(rng.uniform(*event_length_s) * annotation_fps)
        length = max(1, min(length, hi_f - lo_f))
        f0 = int(rng.integers(lo_f, hi_f - length + 1))
        event_frames = (f0, f0 + length)

    grower = label == "Growing"
    times = np.arange(0, num_frames, 2) / fps
    during = None
    if abnormal:
        during = (times >= event_frames[0] / annotation_fps - 1e-9) & (
            times <= event_frames[1] / annotation_fps + 1e-9
        )
    layout = _choose_layout(rng, count, grower, scale, size, times, during)
    shapes = []
    for i, (half, x0, y0, vx, vy, margin) in enumerate(layout.tolist()):
        shapes.append(Shape(colours[i], kinds[i], half, (x0, y0), (vx, vy), margin))
    return VideoSpec(
        name=f"{label}{index:04d}_x264",
        label=label,
        index=index,
        size=size,
        fps=fps,
        num_frames=num_frames,
        tint=tint,
        shapes=tuple(shapes),
        event_frames_ann=event_frames,
        annotation_fps=annotation_fps,
        noise_seed=noise_seed,
        timestamps=timestamps,
    )


def _normal_span(rng: np.random.Generator, duration: float) -> tuple[float, float]:
    """The whole video, or a sub-span of at least MIN_NORMAL_SPAN_S (in whole centiseconds)."""
    total_cs = math.floor(duration * 100 + 1e-6)
    min_cs = round(MIN_NORMAL_SPAN_S * 100)
    if rng.random() < 0.5 or total_cs <= min_cs:
        return 0.0, round(duration, 4)
    length_cs = int(rng.integers(min_cs, total_cs + 1))
    start_cs = int(rng.integers(0, total_cs - length_cs + 1))
    return start_cs / 100, (start_cs + length_cs) / 100


LAYOUT_ATTEMPTS = 100


def _choose_layout(rng, count, grower, scale, size, times, during) -> np.ndarray:
    """Draw LAYOUT_ATTEMPTS candidate layouts at once and keep the one whose shapes hide each other least.

    Returns (count, 6) rows [half, x0, y0, vx, vy, margin]. The cost is 0 when no two shapes overlap by more
    than a quarter of the smaller box at any time and, during an event, no other shape covers more than a
    tenth of the actor's box (weighted 10x); the first zero-cost candidate wins, else the cheapest.
    """
    a = LAYOUT_ATTEMPTS
    lows = np.full(count, SHAPE_SIZE_PX[0])
    highs = np.full(count, SHAPE_SIZE_PX[1])
    factor = np.ones(count)
    if grower:
        lows[0], highs[0], factor[0] = GROWER_SIZE_PX[0], GROWER_SIZE_PX[1], GROW_FACTOR
    half = (lows + (highs - lows) * rng.random((a, count))) * scale / 2.0  # (A, S)
    margin = half * factor
    speed = rng.uniform(SPEED_PX_S[0], SPEED_PX_S[1], (a, count)) * scale
    angle = rng.uniform(0.0, 2.0 * math.pi, (a, count))
    start = margin[..., None] + rng.random((a, count, 2)) * (size - 2.0 * margin[..., None])  # (A, S, 2)
    velocity = np.stack([speed * np.cos(angle), speed * np.sin(angle)], axis=-1)  # (A, S, 2)
    length = (size - 2.0 * margin)[..., None, None]  # (A, S, 1, 1)
    centre = margin[..., None, None] + reflect(
        start[:, :, None, :] - margin[..., None, None] + velocity[:, :, None, :] * times[None, None, :, None],
        length,
    )  # (A, S, T, 2)
    scales = np.ones((count, len(times)))
    if grower:
        scales[0, during] = GROW_FACTOR
    extent = (half[:, :, None] * scales[None])[..., None]  # (A, S, T, 1)
    boxes = np.concatenate([centre - extent, centre + extent], axis=-1)  # (A, S, T, 4)
    cost = np.zeros(a)
    for i, j in combinations(range(count), 2):
        inter = _intersection(boxes[:, i], boxes[:, j])
        smaller = np.minimum(_area(boxes[:, i]), _area(boxes[:, j]))
        cost += np.clip(inter / smaller - 0.25, 0.0, None).sum(-1)
    if during is not None:
        for j in range(1, count):
            inter = _intersection(boxes[:, 0], boxes[:, j])[:, during]
            cost += 10.0 * np.clip(inter / _area(boxes[:, 0])[:, during] - 0.1, 0.0, None).sum(-1)
    zero = np.flatnonzero(cost == 0.0)
    best = int(zero[0]) if len(zero) else int(np.argmin(cost))
    return np.concatenate(
        [half[best, :, None], start[best], velocity[best], margin[best, :, None]], axis=-1
    )  # (S, 6)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0, None)
    return w * h


def _area(a: np.ndarray) -> np.ndarray:
    return (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])


def iter_video_specs(
    seed: int,
    num_videos: int,
    *,
    size: int = 64,
    fps: float = 25.0,
    duration_s: float = 4.0,
    annotation_fps: float = 25.0,
) -> Iterator[VideoSpec]:
    """Every video of a dataset, by class then index."""
    for label, count in _class_counts(num_videos).items():
        for index in range(1, count + 1):
            yield make_video_spec(
                seed, label, index, size=size, fps=fps, duration_s=duration_s, annotation_fps=annotation_fps
            )


def split_videos(
    specs: list[VideoSpec], seed: int, test_fraction: float
) -> tuple[list[VideoSpec], list[VideoSpec]]:
    """Stratified by class, by video; a normal video goes where its abnormal twin goes (when generated).

    At least one test video per abnormal class that has two or more (when test_fraction > 0).
    """
    generated = {s.name for s in specs}
    chosen: set[str] = set()
    for label in (*EVENT_CLASSES, NORMAL_CLASS):  # normal videos follow their twins
        group = [s for s in specs if s.label == label]
        if label == NORMAL_CLASS:
            twins = {s.name: "{}{:04d}_x264".format(*twin_of(s.index)) for s in group}
            chosen.update(s.name for s in group if twins[s.name] in chosen)
            group = [s for s in group if twins[s.name] not in generated]  # the rest is split on its own
        rng = np.random.default_rng([seed, 0x5EED, SYNTH_CLASSES.index(label)])
        order = rng.permutation(len(group))
        n_test = math.floor(len(group) * test_fraction + 0.5)
        if test_fraction > 0 and len(group) >= 2:
            n_test = max(1, n_test)
        chosen.update(group[i].name for i in order[: min(n_test, len(group))].tolist())
    train = [s for s in specs if s.name not in chosen]
    test = [s for s in specs if s.name in chosen]
    return train, test


# ------------------------------------------------------------------------------------------ hard negatives


def hard_negatives(spec: VideoSpec, count: int, rng: np.random.Generator) -> list[str]:
    """`count` captions that each change exactly one attribute word of the region caption, in place.

    Attributes are taken in turn (colour, kind, event for an abnormal actor; colour, kind of one of the
    objects for a normal scene), each drawn at random without repetition. A normal scene's object changes
    colour to one absent from the scene, preferably one that keeps the palette order the captions are
    written in (so a negative is not recognisable by its word order alone).
    """
    words = spec.region_caption().split(" ")

    def variant(position: int, word: str) -> str:
        return " ".join([*words[:position], word, *words[position + 1 :]])

    def shuffled(options: list[str]) -> list[str]:
        return [options[i] for i in rng.permutation(len(options))]

    if spec.is_abnormal:
        colour, kind = spec.objects()[0]
        queues = [
            shuffled([variant(1, c) for c in COLOURS if c != colour]),
            shuffled([variant(2, k) for k in KINDS if k != kind]),
            shuffled([variant(3, EVENT_VERBS[e]) for e in EVENT_CLASSES if e != spec.label]),
        ]
    else:
        objects = palette_order(spec.objects())
        used = {c for c, _ in objects}
        positions = [i for i, w in enumerate(words) if w.rstrip(",") in COLOURS]  # "a red circle, a blue ..."
        in_order, out_of_order, kinds = [], [], []
        for slot, (position, (_, kind)) in enumerate(zip(positions, objects, strict=True)):
            low = COLOURS.index(objects[slot - 1][0]) if slot > 0 else -1
            high = COLOURS.index(objects[slot + 1][0]) if slot + 1 < len(objects) else len(COLOURS)
            for c in COLOURS:
                if c not in used:
                    (in_order if low < COLOURS.index(c) < high else out_of_order).append(variant(position, c))
            suffix = "," if words[position + 1].endswith(",") else ""
            kinds += [variant(position + 1, k + suffix) for k in KINDS if k != kind]
        queues = [shuffled(in_order) + shuffled(out_of_order), shuffled(kinds)]
    chosen: list[str] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    if len(chosen) < count:
        raise ValueError(
            f"{spec.name}: only {len(chosen)} single-attribute hard negatives exist, {count} asked"
        )
    return chosen


def object_hard_negatives(caption: str, count: int, rng: np.random.Generator) -> list[str]:
    """A calm object's region ("a cyan square moving calmly"): `count` captions that change its colour or its
    kind in place, the two attributes taken in turn, each drawn at random without repetition."""
    words = caption.split(" ")
    colour, kind = words[1], words[2]
    colours = [c for c in COLOURS if c != colour]
    kinds = [k for k in KINDS if k != kind]
    queues = [
        [" ".join([words[0], colours[i], *words[2:]]) for i in rng.permutation(len(colours))],
        [" ".join([*words[:2], kinds[i], *words[3:]]) for i in rng.permutation(len(kinds))],
    ]
    chosen: list[str] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


# ------------------------------------------------------------------------------------------------ generate


@dataclass(frozen=True)
class SynthSummary:
    out_dir: Path
    train_path: Path
    test_path: Path
    hard_negatives_path: Path
    test_annotation_path: Path
    test_list_path: Path
    prompts_path: Path
    meta_path: Path
    videos_dir: Path
    num_videos: int
    counts: dict  # {"train": {class: n}, "test": {class: n}, "total": {class: n}}
    seconds: float


def _dump_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def generate(
    out_dir: str | Path,
    *,
    seed: int = 0,
    num_videos: int = 200,
    test_fraction: float = 0.25,
    size: int = 64,
    fps: float = 25.0,
    duration_s: float = 4.0,
    annotation_fps: float = 25.0,
    keyframe_every: int = 5,
    num_hard_negatives: int = 3,
    normal_regions: bool = False,
    untrimmed_test: bool = False,
) -> SynthSummary:
    """Write the synthetic benchmark under `out_dir` (the video root); see the module docstring.

    `normal_regions`: every calm shape gets its own boxed region and caption (``VideoSpec.manifest_entry``).
    `untrimmed_test`: the test videos are long and untrimmed (``make_video_spec(untrimmed=True)``).
    """
    started = time.perf_counter()
    parameters = {
        "num_videos": num_videos,
        "test_fraction": test_fraction,
        "size": size,
        "fps": fps,
        "duration_s": duration_s,
        "annotation_fps": annotation_fps,
        "keyframe_every": keyframe_every,
        "num_hard_negatives": num_hard_negatives,
    }
    _check_parameters(**parameters, normal_regions=normal_regions)
    parameters.update(normal_regions=normal_regions, untrimmed_test=untrimmed_test)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timing = {"size": size, "fps": fps, "duration_s": duration_s, "annotation_fps": annotation_fps}
    specs = list(iter_video_specs(seed, num_videos, **timing))
    train, test = split_videos(specs, seed, test_fraction)  # by name and class: the same with untrimmed_test
    if untrimmed_test:
        test = [make_video_spec(seed, s.label, s.index, **timing, untrimmed=True) for s in test]
        specs = [*train, *test]
    _write_videos(out, specs)
    paths = {name: out / name for name in OUTPUT_FILES}
    region_files = region_annotations(train, test, seed, keyframe_every, num_hard_negatives, normal_regions)
    for name, content in region_files.items():
        _dump_json(paths[name], content)
    _write_test_files(paths, test)
    prompts = prompt_set()
    _dump_json(paths["prompts.json"], prompts)
    counts = _split_counts(specs, train, test)
    parameters["num_frames"] = specs[0].num_frames
    meta = _meta(seed, parameters, specs, train, test, prompts, counts)
    meta["test_abnormal_frame_share"] = abnormal_frame_share(test)
    _dump_json(paths["meta.json"], meta)
    return SynthSummary(
        out_dir=out,
        train_path=paths["train.json"],
        test_path=paths["test.json"],
        hard_negatives_path=paths["hard_negatives.json"],
        test_annotation_path=paths["test_annotation.txt"],
        test_list_path=paths["test_list.txt"],
        prompts_path=paths["prompts.json"],
        meta_path=paths["meta.json"],
        videos_dir=out / "videos",
        num_videos=len(specs),
        counts=counts,
        seconds=time.perf_counter() - started,
    )


def region_annotations(
    train: list, test: list, seed: int, keyframe_every: int, num_hard_negatives: int, normal_regions: bool
) -> dict[str, object]:
    """The files that carry region tracks and captions (train.json, test.json, hard_negatives.json), as JSON
    content. Rendering does not depend on them: the same videos with and without `normal_regions` differ only
    here (benchmarks/ablation.py writes both for one set of videos)."""
    return {
        "train.json": [s.manifest_entry(keyframe_every, normal_regions) for s in train],
        "test.json": [s.manifest_entry(keyframe_every, normal_regions) for s in test],
        "hard_negatives.json": _hard_negative_file(train + test, seed, num_hard_negatives, normal_regions),
    }


OUTPUT_FILES = (
    "train.json",
    "test.json",
    "hard_negatives.json",
    "test_annotation.txt",
    "test_list.txt",
    "prompts.json",
    "meta.json",
)


def abnormal_frame_share(specs: list) -> float | None:
    """Share of the native frames of `specs` that show an event (UCF-Crime's test split: ~7-8 %)."""
    total = sum(spec.num_frames for spec in specs)
    events = [spec.event_native_frames for spec in specs if spec.is_abnormal]
    return round(sum(e1 - s1 + 1 for s1, e1 in events) / total, 4) if total else None


def _check_parameters(
    *,
    num_videos,
    test_fraction,
    size,
    fps,
    duration_s,
    annotation_fps,
    keyframe_every,
    num_hard_negatives,
    normal_regions=False,
) -> None:
    if num_videos < 2:
        raise ValueError(f"num_videos must be >= 2, got {num_videos}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if size < 32:
        raise ValueError(f"size must be >= 32 px, got {size}")
    if keyframe_every < 1:
        raise ValueError(f"keyframe_every must be >= 1, got {keyframe_every}")
    if not 0 <= num_hard_negatives <= MAX_HARD_NEGATIVES:
        raise ValueError(f"num_hard_negatives must be in [0, {MAX_HARD_NEGATIVES}], got {num_hard_negatives}")
    most = len(COLOURS) - 1 + len(KINDS) - 1  # a calm object's single-attribute changes
    if normal_regions and num_hard_negatives > most:
        raise ValueError(
            f"num_hard_negatives must be <= {most} with normal_regions, got {num_hard_negatives}"
        )
    if duration_s < 2 * EVENT_MARGIN_S + EVENT_LENGTH_S[0]:
        raise ValueError(
            f"duration_s must be >= {2 * EVENT_MARGIN_S + EVENT_LENGTH_S[0]} s, got {duration_s}"
        )


def _write_videos(out: Path, specs: list) -> None:
    jobs = [(out / spec.video, spec) for spec in specs]
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers > 1:  # rendering and x264 encoding are per video and CPU-bound: one process per core
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            list(pool.map(_write_one, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    else:
        for job in jobs:
            _write_one(job)


def _write_one(job) -> None:
    from fgclip.data.video import write_video

    path, spec = job
    write_video(path, spec.render(), spec.fps, crf=18, options=X264_OPTIONS)


def _hard_negative_file(
    specs: list, seed: int, num_hard_negatives: int, normal_regions: bool = False
) -> dict:
    """Format 2: one item per video's region, each with hard negatives that change one attribute."""
    items = []
    for spec in specs:
        rng = np.random.default_rng([seed, 0x4E47, SYNTH_CLASSES.index(spec.label), spec.index])
        span = spec.event_span_s if spec.is_abnormal else spec.timestamps
        captions = spec.region_captions(normal_regions)
        for index, caption in enumerate(captions):
            scene_or_actor = index == 0 and (spec.is_abnormal or not normal_regions)
            negatives = (
                hard_negatives(spec, num_hard_negatives, rng)
                if scene_or_actor
                else object_hard_negatives(caption, num_hard_negatives, rng)
            )
            items.append(
                {
                    "video": spec.video,
                    "region_index": index,
                    "region_caption": caption,
                    "hard_negative": negatives,
                    "frames_25": [round(span[0] * 25.0), round(span[1] * 25.0)],
                    "timestamps": [round(span[0], 4), round(span[1], 4)],
                }
            )
    return {
        "meta_file": "train.json",
        "model": "fgclip-synth",
        "created_at": f"fgclip-synth v{GENERATOR_VERSION} seed={seed}",
        "items": items,
    }


def _write_test_files(paths: dict[str, Path], test: list) -> None:
    """The UCF-style temporal annotation of the test split and its test list (`Class/Name.mp4`)."""
    ordered = sorted(test, key=lambda s: s.name)
    paths["test_annotation.txt"].write_text("".join(s.annotation_line() + "\n" for s in ordered))
    paths["test_list.txt"].write_text("".join(f"{s.label}/{s.name}.mp4\n" for s in ordered))


def _split_counts(specs: list, train: list, test: list) -> dict:
    return {
        "train": {c: sum(s.label == c for s in train) for c in SYNTH_CLASSES},
        "test": {c: sum(s.label == c for s in test) for c in SYNTH_CLASSES},
        "total": {c: sum(s.label == c for s in specs) for c in SYNTH_CLASSES},
    }


def _meta(
    seed: int, parameters: dict, specs: list, train: list, test: list, prompts: dict, counts: dict
) -> dict:
    return {
        "generator": "fgclip.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "parameters": parameters,
        "classes": list(SYNTH_CLASSES),
        "event_verbs": dict(EVENT_VERBS),
        "palette": {k: list(v) for k, v in PALETTE.items()},
        "kinds": list(KINDS),
        "counts": counts,
        "num_train": len(train),
        "num_test": len(test),
        "num_prompts": {
            "normal": len(prompts["normal"]),
            "anomaly": {k: len(v) for k, v in prompts["anomaly"].items()},
        },
        "temporal_annotation": "native frames, end inclusive (frames s1..e1 show the event)",
        "tokenization": "re.findall(r'\\w+|[^\\w\\s]+', caption.lower()); ':' and ',' are tokens",
        "vocabulary": synth_vocabulary(),
        # normal video -> its abnormal twin (same shapes and trajectories, no event); always the same split
        "twins": {s.name: "{}{:04d}_x264".format(*twin_of(s.index)) for s in specs if not s.is_abnormal},
    }
