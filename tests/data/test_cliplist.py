"""Clip-list reader: bad entries are reported with file, entry, video and field — all of them at once."""

import json

import pytest

from fgclip.data.dataset import SamplingOptions, clip_span
from fgclip.data.errors import ManifestError
from fgclip.data.formats import load_manifest
from fgclip.data.formats.cliplist import ReadOptions, read_clip_list, read_hard_negatives

GOOD = {
    "video": "a/Abuse001.mp4",
    "global_caption": "a man hits a woman",
    "region_captions": ["a man hits"],
    "box_infos": [
        [
            {"frame": 50, "bbox": [0.1, 0.2, 0.5, 0.9]},
            {"frame": 75, "bbox": [0.2, 0.2, 0.6, 0.9], "enabled": False},
        ]
    ],
    "timestamps": None,
}
NORMAL = {
    "video": "n/N1.mp4",
    "global_caption": "a street",
    "region_captions": ["people walk"],
    "box_infos": [[]],
    "timestamps": [1.0, 5.0],
}


def _write(tmp_path, entries, name="m.json"):
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return path


def test_reads_frames_on_the_annotation_grid(tmp_path):
    clips = read_clip_list(_write(tmp_path, [GOOD, NORMAL]), options=ReadOptions(annotation_fps=25.0))
    abnormal, normal = clips
    assert [k.time_s for k in abnormal.regions[0].track.keyframes] == [2.0, 3.0]
    assert abnormal.regions[0].track.keyframes[-1].enabled is False
    assert abnormal.label == 1 and normal.label == 0
    assert normal.regions[0].track is None and normal.timestamps == (1.0, 5.0)


def test_float_error_outside_unit_box_is_clipped(tmp_path):
    entry = json.loads(json.dumps(GOOD))
    entry["box_infos"][0][0]["bbox"] = [-0.004, 0.2, 1.003, 0.9]
    (clip,) = read_clip_list(_write(tmp_path, [entry]))
    assert clip.regions[0].track.keyframes[0].box == (0.0, 0.2, 1.0, 0.9)


def test_every_problem_is_reported_with_its_location(tmp_path):
    bad_box = json.loads(json.dumps(GOOD))
    bad_box["box_infos"][0][0]["bbox"] = [0.6, 0.2, 0.5, 0.9]
    mismatch = dict(GOOD, region_captions=["a", "b"])
    empty_caption = dict(NORMAL, region_captions=[""])
    inverted_span = dict(NORMAL, timestamps=[5.0, 1.0])
    far_out = json.loads(json.dumps(GOOD))
    far_out["box_infos"][0][1]["bbox"] = [0.1, 0.2, 1.2, 0.9]
    path = _write(tmp_path, [GOOD, bad_box, mismatch, empty_caption, inverted_span, far_out])
    with pytest.raises(ManifestError) as error:
        read_clip_list(path)
    text = str(error.value)
    assert f"{path}, entry 1, video 'a/Abuse001.mp4', field 'box_infos[0][0].bbox'" in text
    assert "empty or inverted box" in text
    assert "entry 2" in text and "1 tracks (1 with keyframes) for 2 region captions" in text
    assert "entry 3" in text and "region_captions[0]" in text
    assert "entry 4" in text and "needs 0 <= start < end" in text
    assert "entry 5" in text and "box_infos[0][1].bbox" in text and "outside [0, 1]" in text
    assert "entry 0," not in text  # entry 0 is fine
    assert len(error.value.problems) == 5
    assert "data.invalid_entries: skip" in text  # the way out is named


def test_skip_policy_leaves_bad_entries_out_and_lists_them(tmp_path):
    mismatch = dict(GOOD, region_captions=["a", "b"])
    path = _write(tmp_path, [GOOD, mismatch, NORMAL])
    result = load_manifest(path, options=ReadOptions(invalid_entries="skip")).check("skip")
    assert [c.sample_id for c in result.clips] == ["m.json:0", "m.json:2"]
    assert result.skipped_entries == [1]
    assert len(read_clip_list(path, options=ReadOptions(invalid_entries="skip"))) == 2


def test_normal_clip_without_span_is_the_whole_video_with_a_warning(tmp_path):
    inferred = dict(NORMAL, timestamps=None)
    explicit = dict(NORMAL, timestamps=None, label="normal")
    result = load_manifest(_write(tmp_path, [inferred, explicit]))
    assert [c.timestamps for c in result.clips] == [None, None]
    assert [(p.index, p.field) for p in result.warnings] == [(0, "timestamps")]  # explicit label: no warning
    options = SamplingOptions(context_s=2.0)
    assert clip_span(result.clips[0], duration_s=37.5, options=options) == (0.0, 37.5)


def test_empty_tracks_are_removed_when_the_counts_then_agree(tmp_path):
    track = GOOD["box_infos"][0]
    extra_empty = dict(GOOD, region_captions=["a", "b"], box_infos=[[], track, track])
    caption_without_track = dict(GOOD, region_captions=["a", "b"], box_infos=[track, []])
    ambiguous = dict(GOOD, region_captions=["a"], box_infos=[track, track])
    result = load_manifest(_write(tmp_path, [extra_empty, caption_without_track, ambiguous]))
    first, second = result.clips
    assert [r.caption for r in first.regions] == ["a", "b"] and all(r.track for r in first.regions)
    assert [r.caption for r in second.regions] == ["a"]  # region "b" has no box: left out, with a warning
    assert {(p.index, p.field) for p in result.warnings} == {(0, "box_infos"), (1, "box_infos[1]")}
    assert [(p.index, p.field) for p in result.errors] == [(2, "box_infos")]
    assert "which track belongs to which caption is unknown" in result.errors[0].message


def test_annotation_grid_from_the_file_a_manifest_setting_or_the_default(tmp_path):
    declared = _write(tmp_path, {"annotation_fps": 30, "clips": [GOOD]}, "declared.json")
    plain = _write(tmp_path, [GOOD], "plain.json")
    keyframe_times = lambda clips: [k.time_s for k in clips[0].regions[0].track.keyframes]  # noqa: E731
    assert keyframe_times(read_clip_list(declared)) == pytest.approx([50 / 30, 75 / 30])
    assert keyframe_times(read_clip_list(plain, annotation_fps=10)) == [5.0, 7.5]
    assert keyframe_times(read_clip_list(plain, options=ReadOptions(annotation_fps=50))) == [1.0, 1.5]
    assert read_clip_list(declared, annotation_fps=30)  # agreeing settings are fine
    with pytest.raises(ManifestError, match="declares 30 fps but the manifest's setting says 25"):
        read_clip_list(declared, annotation_fps=25)


def test_hard_negatives_written_for_another_caption_are_refused(tmp_path):
    items = [
        {"video": GOOD["video"], "region_index": 0, "region_caption": "A man hits.", "hard_negative": ["x"]},
        {"video": NORMAL["video"], "region_index": 0, "region_caption": "cars drive", "hard_negative": ["y"]},
    ]
    negatives = read_hard_negatives(_write(tmp_path, {"items": items}, "hn.json"))
    result = load_manifest(_write(tmp_path, [GOOD, NORMAL]), hard_negatives=negatives)
    assert result.clips[0].regions[0].hard_negatives == ("x",)  # normalised captions compare equal
    assert result.hard_negatives_used == {(GOOD["video"], 0)}
    (error,) = result.errors
    assert error.index == 1 and "written for the caption 'cars drive'" in error.message


def test_hard_negative_duplicates_are_refused(tmp_path):
    item = {"video": "a.mp4", "region_index": 0, "hard_negative": ["x"]}
    path = _write(tmp_path, {"items": [item, item]}, "hn.json")
    with pytest.raises(ManifestError, match="duplicate item for region 0"):
        read_hard_negatives(path)


def test_region_labels_name_the_calm_objects_of_an_abnormal_clip_and_boxed_normal_regions(tmp_path):
    track = GOOD["box_infos"][0]
    abnormal = dict(GOOD, region_captions=["a man hits", "a woman stands"], box_infos=[track, track],
                    region_labels=["abnormal", "normal"])  # fmt: skip
    boxed_normal = dict(NORMAL, region_captions=["a man walks"], box_infos=[track], label="normal")
    first, second = read_clip_list(_write(tmp_path, [abnormal, boxed_normal]))
    assert [r.label for r in first.regions] == [1, 0] and first.label == 1
    assert second.label == 0 and second.regions[0].label == 0 and second.regions[0].track is not None
    contradictions = [dict(NORMAL, region_labels=["abnormal"]), dict(GOOD, region_labels=["normal"]),
                      dict(GOOD, region_labels=["abnormal", "normal"])]  # fmt: skip
    with pytest.raises(ManifestError) as error:
        read_clip_list(_write(tmp_path, contradictions, "bad.json"))
    message = str(error.value)
    assert "a normal clip cannot hold an abnormal region" in message
    assert "an abnormal clip needs at least one abnormal region" in message
    assert "must be a list of 1 labels" in message
