"""`data synth --normal-regions` (every calm shape its own boxed region) and `--untrimmed-test` (UCF-like long
test videos with one short event)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fgclip.cli import main
from fgclip.data.formats.cliplist import read_clip_list, read_hard_negatives
from fgclip.data.records import ABNORMAL, NORMAL
from fgclip.data.tracks import box_at
from fgclip.data.video import probe_video
from fgclip.synthetic.generator import (
    UNTRIMMED_DURATION_S,
    UNTRIMMED_EVENT_S,
    abnormal_frame_share,
    make_video_spec,
)
from fgclip.synthetic.vocabulary import EVENT_CLASSES, NORMAL_CLASS, object_region_caption


@pytest.fixture(scope="module")
def regions(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("regions")
    assert (
        main(["data", "synth", "--out", str(out), "--num-videos", "8", "--seed", "4", "--normal-regions"])
        == 0
    )
    return out


def _spec_of(video: str):
    label = Path(video).parent.name
    index = int(Path(video).stem[len(label) : len(label) + 4])
    return make_video_spec(4, label, index)


def test_every_shape_is_a_region_with_its_true_box_and_a_caption_of_what_it_does(regions):
    negatives = read_hard_negatives(regions / "hard_negatives.json")
    clips = [
        c
        for name in ("train.json", "test.json")
        for c in read_clip_list(regions / name, hard_negatives=negatives)
    ]
    assert {c.label for c in clips} == {NORMAL, ABNORMAL}
    for clip in clips:
        spec = _spec_of(clip.video_key)
        assert len(clip.regions) == len(spec.shapes), clip.sample_id
        first_calm = 1 if clip.is_abnormal else 0
        assert [r.label for r in clip.regions] == [ABNORMAL] * first_calm + [NORMAL] * (
            len(spec.shapes) - first_calm
        )
        for index, region in enumerate(clip.regions):
            assert region.track is not None and len(region.hard_negatives) == 3
            if index >= first_calm:
                assert region.caption == object_region_caption(spec.objects()[index])
            for keyframe in region.track.keyframes:  # the shape's true box at every keyframe
                assert np.allclose(keyframe.box, spec.box(index, keyframe.time_s), atol=1e-5)
        if not clip.is_abnormal:  # the tracks cover the clip span: no full-frame "calm" region is left
            t0, t1 = clip.timestamps
            assert all(box_at(r.track, (t0 + t1) / 2, 0.5) is not None for r in clip.regions)


def test_a_calm_object_s_hard_negatives_change_one_word_in_place(regions):
    items = json.loads((regions / "hard_negatives.json").read_text())["items"]
    calm = [i for i in items if i["region_caption"].endswith("moving calmly")]
    assert calm
    for item in calm:
        words = item["region_caption"].split()
        for negative in item["hard_negative"]:
            changed = [p for p, (a, b) in enumerate(zip(words, negative.split(), strict=True)) if a != b]
            assert len(changed) == 1 and changed[0] in (1, 2), (item["region_caption"], negative)


def test_untrimmed_test_videos_are_long_with_one_short_event(tmp_path):
    out = tmp_path / "untrimmed"
    argv = ["data", "synth", "--out", str(out), "--num-videos", "8", "--seed", "5", "--test-fraction", "0.25",
            "--untrimmed-test"]  # fmt: skip
    assert main(argv) == 0
    meta = json.loads((out / "meta.json").read_text())
    test = json.loads((out / "test.json").read_text())
    train = json.loads((out / "train.json").read_text())
    assert meta["parameters"]["untrimmed_test"] and test and train
    for entry in train:  # the training videos stay 4 s
        assert probe_video(out / entry["video"]).duration_s == pytest.approx(4.0, abs=0.05)
    lines = {line.split()[0]: line.split() for line in (out / "test_annotation.txt").read_text().splitlines()}
    for entry in test:
        duration = probe_video(out / entry["video"]).duration_s
        assert UNTRIMMED_DURATION_S[0] - 0.05 <= duration <= UNTRIMMED_DURATION_S[1] + 0.05
        name, label, s1, e1 = lines[Path(entry["video"]).stem][:4]
        if label != NORMAL_CLASS:
            event_s = (int(e1) - int(s1) + 1) / 25.0
            assert UNTRIMMED_EVENT_S[0] - 0.1 <= event_s <= UNTRIMMED_EVENT_S[1] + 0.1
    assert 0 < meta["test_abnormal_frame_share"] < 0.3


def test_untrimmed_abnormal_frame_share_is_near_ucf_crime_s():
    """Half normal, half abnormal test videos (the generator's split): ~8 % abnormal frames (UCF-Crime ~7-8 %);
    a normal twin is as long as its abnormal video."""
    abnormal = [make_video_spec(0, EVENT_CLASSES[i % 3], i // 3 + 1, untrimmed=True) for i in range(45)]
    normal = [make_video_spec(0, NORMAL_CLASS, i + 1, untrimmed=True) for i in range(45)]
    share = abnormal_frame_share(abnormal + normal)
    assert 0.065 <= share <= 0.095, share
    assert normal[0].num_frames == abnormal[0].num_frames and normal[0].shapes == abnormal[0].shapes
    assert make_video_spec(0, "Flashing", 1).num_frames == 100  # without the option: the 4 s video


def test_region_annotations_are_the_files_synth_writes_for_the_same_videos(regions):
    """The ablation trains a normal-regions row on the same videos as every other row: the generator's draws,
    replayed without rendering, give exactly the region files `data synth` wrote (with and without)."""
    from fgclip.synthetic.generator import iter_video_specs, region_annotations, split_videos

    specs = list(iter_video_specs(4, 8))
    train, test = split_videos(specs, 4, 0.25)
    files = region_annotations(train, test, 4, keyframe_every=5, num_hard_negatives=3, normal_regions=True)
    for name, content in files.items():
        assert content == json.loads((regions / name).read_text()), name
    plain = region_annotations(train, test, 4, keyframe_every=5, num_hard_negatives=3, normal_regions=False)
    assert [e["video"] for e in plain["train.json"]] == [e["video"] for e in files["train.json"]]
    assert sum(len(e["region_captions"]) for e in plain["train.json"]) < sum(
        len(e["region_captions"]) for e in files["train.json"]
    )
