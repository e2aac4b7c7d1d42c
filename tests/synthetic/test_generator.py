"""The synthetic benchmark (`fgclip.synthetic`): files and formats, determinism, true boxes, visible events, vocabulary."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import av
import numpy as np
import pytest

from fgclip.data.formats.cliplist import ReadOptions, read_clip_list, read_hard_negatives
from fgclip.data.tracks import box_at
from fgclip.synthetic import generator
from fgclip.synthetic.generator import (
    MAX_HARD_NEGATIVES,
    SynthSummary,
    generate,
    hard_negatives,
    iter_video_specs,
    make_video_spec,
    split_videos,
)
from fgclip.synthetic.scene import FLASH_WHITE, twin_of
from fgclip.synthetic.vocabulary import (
    COLOURS,
    EVENT_CLASSES,
    EVENT_VERBS,
    KINDS,
    PALETTE,
    SYNTH_CLASSES,
    synth_vocabulary,
    tokenize_caption,
)

NUM_VIDEOS = 12
SEED = 0
JSON_FILES = ("train.json", "test.json", "hard_negatives.json", "prompts.json", "meta.json")
TEXT_FILES = ("test_annotation.txt", "test_list.txt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> SynthSummary:
    return generate(tmp_path_factory.mktemp("synth") / "a", seed=SEED, num_videos=NUM_VIDEOS)


def _load(summary: SynthSummary, name: str):
    return json.loads((summary.out_dir / name).read_text())


def _entries(summary: SynthSummary) -> list[dict]:
    return _load(summary, "train.json") + _load(summary, "test.json")


def _spec(entry: dict, meta: dict):
    """The generator's own description of a manifest entry's video (its true boxes at any time)."""
    name, label = Path(entry["video"]).stem, Path(entry["video"]).parent.name
    index = int(name[len(label) : len(label) + 4])
    spec = make_video_spec(
        SEED,
        label,
        index,
        size=meta["size"],
        fps=meta["fps"],
        duration_s=meta["duration_s"],
        annotation_fps=meta["annotation_fps"],
    )
    assert spec.name == name
    return spec


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


_CLASSES = [*COLOURS, "white"]
_REFERENCE = np.array([*PALETTE.values(), FLASH_WHITE], dtype=np.float32)


def _colour_map(frame: np.ndarray) -> np.ndarray:
    """(H, W) index into _CLASSES of each foreground pixel's nearest reference colour, -1 for background.

    x264 keeps luma sharp but subsamples and quantises chroma (a 64 px frame has 32 px of chroma), so a
    decoded colour can be 60+ away from its palette value in one channel: no distance threshold, only
    "bright enough to be a shape" (the background is below 40, every palette colour has a channel >= 220).
    """
    pixels = frame.astype(np.float32)
    distance = np.linalg.norm(pixels[:, :, None, :] - _REFERENCE[None, None], axis=-1)
    return np.where(pixels.max(-1) >= 110.0, distance.argmin(-1), -1)


# ------------------------------------------------------------------------------------------- files, format


def test_files_exist_and_parse(dataset):
    for name in JSON_FILES:
        assert isinstance(_load(dataset, name), (list, dict)), name
    for name in TEXT_FILES:
        assert (dataset.out_dir / name).read_text().strip(), name
    assert dataset.train_path.is_file() and dataset.meta_path.is_file() and dataset.videos_dir.is_dir()
    assert dataset.num_videos == NUM_VIDEOS
    for entry in _entries(dataset):
        assert (dataset.out_dir / entry["video"]).is_file()
    assert sorted(
        p.relative_to(dataset.out_dir).as_posix() for p in dataset.videos_dir.rglob("*.mp4")
    ) == sorted(e["video"] for e in _entries(dataset))


def test_manifests_are_valid_clip_lists(dataset):
    meta = _load(dataset, "meta.json")["parameters"]
    afps, every = meta["annotation_fps"], meta["keyframe_every"]
    negatives = read_hard_negatives(dataset.hard_negatives_path)
    for name in ("train.json", "test.json"):
        clips = read_clip_list(
            dataset.out_dir / name, resolve_video=lambda v: dataset.out_dir / v, hard_negatives=negatives
        )
        entries = _load(dataset, name)
        assert len(clips) == len(entries)
        for clip, entry in zip(clips, entries, strict=True):
            assert clip.video.is_file()
            assert len(entry["region_captions"]) == 1 and len(entry["box_infos"]) == 1
            assert len(clip.regions[0].hard_negatives) == meta["num_hard_negatives"]
            label = Path(entry["video"]).parent.name
            assert label in SYNTH_CLASSES
            if label == "Normal":
                assert not clip.is_abnormal
                assert entry["box_infos"] == [[]] and clip.regions[0].track is None
                start, end = entry["timestamps"]
                assert 0 <= start < end <= meta["duration_s"] + 1e-9
                assert end - start >= 2.0 - 1e-9
                continue
            assert clip.is_abnormal and entry["timestamps"] is None
            track = entry["box_infos"][0]
            frames = [k["frame"] for k in track]
            assert all(isinstance(f, int) and not isinstance(f, bool) for f in frames)
            assert frames == sorted(set(frames))
            assert all(b - a <= every for a, b in zip(frames, frames[1:], strict=False))
            assert set(range(frames[0], frames[-1], every)) <= set(frames)  # the regular grid from t0
            assert frames[0] >= 0.4 * afps and frames[-1] <= meta["duration_s"] * afps - 0.4 * afps
            assert 1.2 * afps - 1 <= frames[-1] - frames[0] <= 2.0 * afps + 1
            assert track[-1]["enabled"] is False
            assert all(k.get("enabled", True) for k in track[:-1])
            for keyframe in track:
                x1, y1, x2, y2 = keyframe["bbox"]
                assert 0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0


def test_splits_disjoint_stratified_and_counted(dataset):
    train, test = _load(dataset, "train.json"), _load(dataset, "test.json")
    train_videos, test_videos = {e["video"] for e in train}, {e["video"] for e in test}
    assert len(train_videos) == len(train) and len(test_videos) == len(test)
    assert not train_videos & test_videos
    assert len(train) + len(test) == NUM_VIDEOS
    meta = _load(dataset, "meta.json")
    for split, entries in (("train", train), ("test", test)):
        counts = {c: sum(Path(e["video"]).parent.name == c for e in entries) for c in SYNTH_CLASSES}
        assert counts == meta["counts"][split] == dataset.counts[split]
        assert all(n > 0 for n in counts.values())  # stratified: every class in both splits
    assert meta["num_train"] == len(train) and meta["num_test"] == len(test)
    assert sum(meta["counts"]["total"].values()) == NUM_VIDEOS
    assert meta["counts"]["total"]["Normal"] == NUM_VIDEOS // 2
    listed = (dataset.out_dir / "test_list.txt").read_text().splitlines()
    assert sorted(listed) == sorted(Path(v).relative_to("videos").as_posix() for v in test_videos)


def test_temporal_annotation_matches_event_spans(dataset):
    meta = _load(dataset, "meta.json")["parameters"]
    lines = (dataset.out_dir / "test_annotation.txt").read_text().splitlines()
    test = {Path(e["video"]).stem: e for e in _load(dataset, "test.json")}
    assert sorted(line.split("  ")[0] for line in lines) == sorted(test)
    for line in lines:
        fields = line.split("  ")
        assert len(fields) == 6, line  # two-space separated, as in UCF-Crime's file
        name, label, s1, e1, s2, e2 = fields[0], fields[1], *map(int, fields[2:])
        assert (s2, e2) == (-1, -1)
        entry = test[name]
        assert label == Path(entry["video"]).parent.name
        if label == "Normal":
            assert (s1, e1) == (-1, -1)
            continue
        track = entry["box_infos"][0]
        t0, t1 = track[0]["frame"] / meta["annotation_fps"], track[-1]["frame"] / meta["annotation_fps"]
        assert s1 == math.ceil(t0 * meta["fps"] - 1e-6) and e1 == math.floor(t1 * meta["fps"] + 1e-6)
        assert 0 < s1 <= e1 < meta["num_frames"] - 1


# --------------------------------------------------------------------------------------------- determinism


# libx264 (one thread, preset veryfast) is not bit-exact here: the same frames encoded after other work in the
# same process can come out different (its output depends on the process's history, e.g. after generating
# another seed; fresh forked workers rarely differ). Measured on such pairs: every frame >= 36.8 dB PSNR to the
# other encode, while a one-frame shift of the same video gives a median of 25-30 dB and minima of 15-27 dB.
# So videos are compared as decoded frames, each at >= 33 dB: encoder noise passes, a wrong frame, video or
# rendering does not.
MIN_PSNR_DB = 33.0


def _assert_same_video(a: Path, b: Path) -> None:
    frames_a, frames_b = _decode(a).astype(np.float64), _decode(b).astype(np.float64)
    assert frames_a.shape == frames_b.shape, (a, frames_a.shape, frames_b.shape)
    mse = ((frames_a - frames_b) ** 2).reshape(len(frames_a), -1).mean(axis=1)  # (N,)
    psnr = 10.0 * np.log10(255.0**2 / np.maximum(mse, 1e-12))
    assert psnr.min() >= MIN_PSNR_DB, (a, float(psnr.min()), int(psnr.argmin()))


def _file_bytes(summary: SynthSummary) -> dict[str, bytes]:
    return {name: (summary.out_dir / name).read_bytes() for name in JSON_FILES + TEXT_FILES}


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    again = generate(tmp_path / "b", seed=SEED, num_videos=NUM_VIDEOS)
    assert _file_bytes(again) == _file_bytes(dataset)
    first = _entries(dataset)[0]["video"]
    _assert_same_video(again.out_dir / first, dataset.out_dir / first)
    other = generate(tmp_path / "c", seed=SEED + 1, num_videos=NUM_VIDEOS)
    assert _load(other, "train.json") != _load(dataset, "train.json")
    assert (other.out_dir / first).read_bytes() != (dataset.out_dir / first).read_bytes()
    assert (
        _load(other, "hard_negatives.json")["created_at"]
        != _load(dataset, "hard_negatives.json")["created_at"]
    )


def test_videos_written_in_parallel_are_the_serial_bytes(dataset, tmp_path, monkeypatch):
    """`generate` writes videos in one process per core; the videos must not depend on that."""
    monkeypatch.setattr(generator.os, "cpu_count", lambda: 1)
    serial = generate(tmp_path / "serial", seed=SEED, num_videos=NUM_VIDEOS)
    videos = sorted(p.relative_to(serial.out_dir) for p in serial.videos_dir.rglob("*.mp4"))
    assert len(videos) == NUM_VIDEOS
    for video in videos:
        _assert_same_video(serial.out_dir / video, dataset.out_dir / video)


def test_normal_videos_are_twins_of_abnormal_ones(dataset):
    train, test = _load(dataset, "train.json"), _load(dataset, "test.json")
    split_of = {
        Path(e["video"]).stem: split for split, entries in (("train", train), ("test", test)) for e in entries
    }
    for entry in train + test:
        name = Path(entry["video"]).stem
        if not name.startswith("Normal"):
            continue
        normal = make_video_spec(SEED, "Normal", int(name[6:10]))
        label, index = twin_of(normal.index)
        twin = make_video_spec(SEED, label, index)
        assert (
            normal.shapes == twin.shapes and normal.tint == twin.tint and normal.noise_seed != twin.noise_seed
        )
        assert np.array_equal(normal.box_px(1, np.arange(100) / 25), twin.box_px(1, np.arange(100) / 25))
        assert normal.region_caption() == entry["region_captions"][0] and not normal.is_abnormal
        if twin.name in split_of:
            assert split_of[twin.name] == split_of[name]  # a pair never straddles the splits
    assert [twin_of(i) for i in (1, 2, 3, 4)] == [
        ("Flashing", 1),
        ("Growing", 1),
        ("Shattering", 1),
        ("Flashing", 2),
    ]
    twins = _load(dataset, "meta.json")["twins"]
    assert len(twins) == NUM_VIDEOS // 2 and twins["Normal0002_x264"] == "Growing0001_x264"


def test_a_video_does_not_depend_on_the_dataset_size():
    small = {s.name: s for s in iter_video_specs(SEED, 8)}
    large = {s.name: s for s in iter_video_specs(SEED, 40)}
    for name, spec in small.items():
        assert large[name] == spec
        assert np.array_equal(large[name].render(), spec.render())


# ------------------------------------------------------------------------------------- boxes are the truth


def _box_mask(shape: tuple[int, int], box, grow: float = 0.0) -> np.ndarray:
    x1, y1, x2, y2 = box
    mask = np.zeros(shape, dtype=bool)
    mask[
        max(0, math.floor(y1 - grow)) : math.ceil(y2 + grow),
        max(0, math.floor(x1 - grow)) : math.ceil(x2 + grow),
    ] = True
    return mask


def test_keyframe_boxes_match_the_decoded_pixels(dataset):
    """At every keyframe the actor's colour dominates its box, and (away from the other shapes, whose edges
    blend colours after chroma subsampling) hardly any of it lies outside the box grown by 2 px."""
    meta = _load(dataset, "meta.json")["parameters"]
    size, checked, isolated_checked = meta["size"], 0, 0
    for entry in _entries(dataset):
        if entry["timestamps"] is not None:
            continue
        frames = _decode(dataset.out_dir / entry["video"])
        label = Path(entry["video"]).parent.name
        actor = COLOURS.index(entry["region_captions"][0].split()[1])
        spec = _spec(entry, meta)
        assert spec.region_caption() == entry["region_captions"][0]
        for keyframe in entry["box_infos"][0]:
            native = keyframe["frame"] * meta["fps"] / meta["annotation_fps"]
            assert native == int(native)
            colours = _colour_map(frames[int(native)])
            mine = colours == actor
            if label == "Flashing":
                mine |= colours == _CLASSES.index("white")
            box = [v * size for v in keyframe["bbox"]]
            inside, near = _box_mask(mine.shape, box), _box_mask(mine.shape, box, grow=2.0)
            t = keyframe["frame"] / meta["annotation_fps"]
            others = np.zeros_like(mine)
            for i in range(1, len(spec.shapes)):
                others |= _box_mask(mine.shape, spec.box_px(i, t), grow=2.0)
            counts = np.bincount(colours[inside & (colours >= 0)], minlength=len(_CLASSES))
            fill = 0.03 if label == "Shattering" else 0.25  # a triangle fills half of its box; fragments less
            assert mine[inside].sum() >= fill * inside.sum(), (entry["video"], keyframe)
            rivals = [c for i, c in enumerate(counts) if i != actor and _CLASSES[i] != "white"]
            assert mine[inside].sum() > max(rivals), (entry["video"], keyframe, counts)
            stray = (mine & ~near & ~others).sum()
            assert stray <= 0.05 * mine[inside].sum() + 2, (entry["video"], keyframe, stray)  # tight
            checked += 1
            if label != "Shattering" and not (others & near).any():  # fragments need not reach the edges
                ys, xs = np.nonzero(mine & near)
                extent = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                # a triangle's apex is thinner than a chroma sample: its top rows lose their colour
                top = 4.0 if " triangle " in entry["region_captions"][0] else 2.5
                assert (np.abs(extent - np.array(box)) <= [2.5, top, 2.5, 2.5]).all(), (
                    entry["video"],
                    extent,
                )
                isolated_checked += 1
    assert checked > 20 and isolated_checked > 10


@pytest.mark.parametrize("fps, annotation_fps", [(25.0, 25.0), (30.0, 25.0), (25.0, 10.0)])
def test_interpolated_track_follows_the_true_box(tmp_path, fps, annotation_fps):
    """Linear interpolation between keyframes (as the dataset reads them) stays within 0.05 of the truth."""
    worst = 0.0
    for label in EVENT_CLASSES:
        for index in range(1, 9):
            spec = make_video_spec(SEED, label, index, fps=fps, annotation_fps=annotation_fps)
            path = tmp_path / f"{spec.name}.json"
            path.write_text(json.dumps([spec.manifest_entry(keyframe_every=5)]))
            (clip,) = read_clip_list(path, options=ReadOptions(annotation_fps=annotation_fps))
            track = clip.regions[0].track
            s1, e1 = spec.event_native_frames
            for frame in range(s1, e1 + 1):
                t = frame / fps
                box = box_at(track, t, hold_s=0.0)
                assert box is not None, (spec.name, frame)
                worst = max(worst, float(np.abs(np.array(box) - spec.box(0, t)).max()))
            t0, t1 = spec.event_span_s
            assert box_at(track, t0 - 1 / fps, 0.0) is None and box_at(track, t1 + 1 / fps, 0.0) is None
            for keyframe, kf in zip(spec.track(5), track.keyframes, strict=True):
                assert np.allclose(kf.box, spec.box(0, keyframe["frame"] / annotation_fps), atol=1e-5)
    assert worst < 0.05
    if annotation_fps == fps:
        assert worst < 0.02  # keyframes on both sides of every bounce


# ------------------------------------------------------------------------------------------ events visible


def _actor_stats(spec, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per frame: whiteness (mean of the smallest channel) inside the actor's true box, the count of its
    colour's pixels and the fraction of the box they fill. No palette colour has a channel above 60 at its
    smallest; white has 250."""
    actor = COLOURS.index(spec.shapes[0].colour)
    white, count, fill = [], [], []
    for n, frame in enumerate(frames):
        x1, y1, x2, y2 = (int(round(v)) for v in spec.box_px(0, n / spec.fps))
        crop = frame[y1:y2, x1:x2].astype(np.float32)
        white.append(crop.min(-1).mean())
        colours = _colour_map(frame)
        count.append((colours == actor).sum())
        fill.append((colours[y1:y2, x1:x2] == actor).mean())
    return {"white": np.array(white), "count": np.array(count), "fill": np.array(fill)}


@pytest.mark.parametrize("label", EVENT_CLASSES)
def test_event_is_visible_during_its_span_only(dataset, label, tmp_path):
    from fgclip.data.video import write_video

    for index in (1, 2, 3):
        spec = make_video_spec(SEED, label, index)
        path = write_video(tmp_path / f"{spec.name}.mp4", spec.render(), spec.fps)
        stats = _actor_stats(spec, _decode(path))
        s1, e1 = spec.event_native_frames
        during = np.zeros(spec.num_frames, dtype=bool)
        during[s1 : e1 + 1] = True
        if label == "Flashing":  # white in every event frame (white core or white rim)
            assert stats["white"][during].min() > stats["white"][~during].max() + 10, spec.name
            assert stats["white"][during].mean() > stats["white"][~during].mean() + 30, spec.name
        elif label == "Growing":  # four times the area
            assert stats["count"][during].min() > 2.5 * stats["count"][~during].max(), spec.name
        else:  # fragments: the box is far less filled
            assert stats["fill"][during].max() < 0.8 * stats["fill"][~during].min(), spec.name
            assert stats["fill"][during].mean() < 0.55 * stats["fill"][~during].mean(), spec.name


def test_normal_videos_show_no_event(dataset):
    for entry in _load(dataset, "train.json"):
        if entry["timestamps"] is None:
            continue
        frames = _decode(dataset.out_dir / entry["video"])
        whitish = (frames.min(-1) >= 150).sum(axis=(1, 2))  # chroma blur makes a few at colour boundaries
        assert whitish.max() <= 20 and whitish.mean() < 3, entry["video"]
        colours = np.stack([_colour_map(f) for f in frames[::5]])
        words = [w for w in tokenize_caption(entry["region_captions"][0]) if w in COLOURS]
        for word in words:
            assert (colours == COLOURS.index(word)).sum(axis=(1, 2)).max() < 18 * 18 + 60  # never grown


# --------------------------------------------------------------------------------- captions and negatives


def _changed_attribute(caption: str, negative: str) -> int:
    """Index of the attribute group (colour, kind, event) of the one word `negative` changes in `caption`."""
    truth, tokens = tokenize_caption(caption), tokenize_caption(negative)
    assert negative != caption and len(tokens) == len(truth), (caption, negative)
    changed = [(a, b) for a, b in zip(truth, tokens, strict=True) if a != b]
    assert len(changed) == 1, (caption, negative)
    ((a, b),) = changed
    groups = [set(COLOURS), set(KINDS), set(EVENT_VERBS.values())]
    (group,) = [i for i, g in enumerate(groups) if a in g and b in g]
    return group


def test_hard_negatives_change_exactly_one_attribute(dataset):
    data = _load(dataset, "hard_negatives.json")
    assert data["meta_file"] == "train.json" and data["model"] == "fgclip-synth"
    assert str(SEED) in data["created_at"]
    entries = {e["video"]: e for e in _entries(dataset)}
    assert sorted(item["video"] for item in data["items"]) == sorted(entries)
    for item in data["items"]:
        entry = entries[item["video"]]
        assert item["region_index"] == 0 and item["region_caption"] == entry["region_captions"][0]
        negatives = item["hard_negative"]
        assert len(negatives) == len(set(negatives)) == 3
        groups = [_changed_attribute(item["region_caption"], n) for n in negatives]
        start, end = item["timestamps"]
        assert 0 <= start < end and item["frames_25"] == [round(start * 25), round(end * 25)]
        if entry["timestamps"] is None:  # abnormal: one colour, one kind and one event change
            assert sorted(groups) == [0, 1, 2]
            track = entry["box_infos"][0]
            assert [start, end] == [track[0]["frame"] / 25, track[-1]["frame"] / 25]
        else:  # normal: an object's colour, then a kind, then a colour
            assert groups == [0, 1, 0] and [start, end] == entry["timestamps"]


def test_as_many_hard_negatives_as_allowed():
    specs = list(iter_video_specs(SEED, 24))
    for spec in specs:
        negatives = hard_negatives(spec, MAX_HARD_NEGATIVES, np.random.default_rng(0))
        assert len(set(negatives)) == MAX_HARD_NEGATIVES
        for negative in negatives:
            _changed_attribute(spec.region_caption(), negative)
    with pytest.raises(ValueError, match="num_hard_negatives"):
        generate("unused", num_videos=4, num_hard_negatives=MAX_HARD_NEGATIVES + 1)


def test_captions_describe_the_scene():
    specs = list(iter_video_specs(SEED, 60))
    for spec in specs:
        region, caption = spec.region_caption(), spec.global_caption()
        for colour, kind in spec.objects():
            assert f"{colour} {kind}" in caption
        if spec.is_abnormal:
            colour, kind = spec.objects()[0]
            assert region == f"a {colour} {kind} {EVENT_VERBS[spec.label]}"
            assert caption.startswith(f"an anomaly: {region} near ")
        else:
            assert caption.startswith("a normal scene: ") and region.endswith(" move calmly")
        assert len({c for c, _ in spec.objects()}) == len(spec.objects())  # distinct colours
        assert 2 <= len(spec.objects()) <= 3


def test_test_captions_are_mostly_unique():
    specs = list(iter_video_specs(SEED, 200))
    _, test = split_videos(specs, SEED, 0.25)
    globals_ = [s.global_caption() for s in test]
    regions = [s.region_caption() for s in test]
    assert len(set(globals_)) >= 0.9 * len(globals_)
    assert len(set(regions)) >= 0.8 * len(regions)


def test_vocabulary_is_closed(dataset):
    vocabulary = set(synth_vocabulary())
    assert synth_vocabulary() == sorted(vocabulary)
    assert _load(dataset, "meta.json")["vocabulary"] == synth_vocabulary()
    texts = []
    for entry in _entries(dataset):
        texts += [entry["global_caption"], *entry["region_captions"]]
    for item in _load(dataset, "hard_negatives.json")["items"]:
        texts += item["hard_negative"]
    prompts = _load(dataset, "prompts.json")
    prompt_texts = [*prompts["normal"], *(p for ps in prompts["anomaly"].values() for p in ps)]
    assert sorted(prompts["anomaly"]) == sorted(EVENT_CLASSES) and prompts["normal"]
    for text in texts + prompt_texts:
        assert text == text.lower()
        assert set(tokenize_caption(text)) <= vocabulary, text
    # every prompt word occurs in the training captions of a default-sized dataset
    train, _ = split_videos(list(iter_video_specs(SEED, 200)), SEED, 0.25)
    seen = {t for s in train for c in (s.global_caption(), s.region_caption()) for t in tokenize_caption(c)}
    assert {t for p in prompt_texts for t in tokenize_caption(p)} <= seen
    assert seen <= vocabulary


def test_word_tokenizer_knows_every_token(dataset):
    from fgclip.data.text import build_word_tokenizer

    tokenizer = build_word_tokenizer(synth_vocabulary())
    for entry in _entries(dataset):
        for text in (entry["global_caption"], *entry["region_captions"]):
            ids = tokenizer(text)["input_ids"]
            assert tokenizer.unk_token_id not in ids, text
            assert len(ids) == len(tokenize_caption(text)) + 2


# ---------------------------------------------------------------------------------------------------- speed


@pytest.mark.slow
def test_two_hundred_videos_generate_fast(tmp_path):
    started = time.perf_counter()
    summary = generate(tmp_path / "full", seed=SEED, num_videos=200)
    elapsed = time.perf_counter() - started
    assert summary.num_videos == 200
    assert sum(summary.counts["test"].values()) == 50
    assert elapsed < 30.0, f"{elapsed:.1f} s for 200 videos"
