"""Label Studio export (format 4) and legacy normal-clip dict (format 3) -> clip-list entries, on known values."""

from __future__ import annotations

import copy

import pytest

from fgclip.data.errors import ManifestError
from fgclip.data.formats import detect_format
from fgclip.data.formats.cliplist import read_clip_entries
from fgclip.data.formats.labelstudio import convert_labelstudio
from fgclip.data.formats.normal_dict import convert_normal_dict


def _kf(frame, x=10.0, enabled=True, fps=25.0, **extra):
    return {"frame": frame, "x": x, "y": 20.0, "width": 30.0, "height": 40.0, "enabled": enabled,
            "rotation": 0, "time": frame / fps, **extra}  # fmt: skip


def _task(sequences, task_id=1, frames_count=500, labels=("Anomaly",), **data):
    results = [
        {"type": "videorectangle", "id": f"r{k}",
         "value": {"framesCount": frames_count, "duration": frames_count / 25, "sequence": seq, "labels": list(labels)}}
        for k, seq in enumerate(sequences)
    ]  # fmt: skip
    return {
        "id": task_id,
        "annotations": [{"result": results, "was_cancelled": False}],
        "data": {
            "video": "/data/local-files/?d=MSAD/Some%20Videos/fall_1.mp4",
            "category": "Object_falling",
            **data,
        },
    }


def test_labelstudio_keeps_frames_on_its_grid_and_converts_percent_boxes():
    task = _task([[_kf(100), _kf(146, x=20.0, enabled=False)]])
    conversion = convert_labelstudio([task], "ls.json")
    assert detect_format([task], "ls.json") == "labelstudio"
    assert conversion.annotation_fps == 25.0 and not conversion.errors
    (entry,) = conversion.entries
    assert entry["video"] == "MSAD/Some Videos/fall_1.mp4"  # local-files prefix removed, URL-decoded
    assert entry["global_caption"] == "Object falling" and entry["region_captions"] == ["Anomaly"]
    assert entry["box_infos"] == [
        [
            {"frame": 100, "bbox": pytest.approx([0.1, 0.2, 0.4, 0.6]), "enabled": True},
            {"frame": 146, "bbox": pytest.approx([0.2, 0.2, 0.5, 0.6]), "enabled": False},
        ]
    ]
    # Read back: 1-based frame f is the instant f / 25 the editor showed (its own `time`), not native frame f.
    (clip,) = read_clip_entries(conversion.entries, "ls.json", annotation_fps=conversion.annotation_fps).clips
    assert [k.time_s for k in clip.regions[0].track.keyframes] == [4.0, 5.84]


def test_labelstudio_grid_comes_from_the_export_and_must_agree():
    task = _task([[_kf(30, fps=30.0), _kf(60, fps=30.0, enabled=False)]])
    assert convert_labelstudio([task], "ls.json").annotation_fps == 30.0
    assert convert_labelstudio([task], "ls.json").document() == {
        "annotation_fps": 30.0,
        "clips": convert_labelstudio([task], "ls.json").entries,
    }
    wrong = convert_labelstudio([task], "ls.json", annotation_fps=25.0)
    assert any("30-fps grid (frame/time) but 25 was asked for" in p.message for p in wrong.errors)
    no_time = copy.deepcopy(task)
    for kf in no_time["annotations"][0]["result"][0]["value"]["sequence"]:
        del kf["time"]
    assert any(
        "give the annotation fps" in p.message for p in convert_labelstudio([no_time], "ls.json").errors
    )
    assert convert_labelstudio([no_time], "ls.json", annotation_fps=30.0).annotation_fps == 30.0


def test_labelstudio_open_track_is_extended_to_the_video_end_as_the_editor_shows_it():
    task = _task([[_kf(100), _kf(120)], [_kf(200)], [_kf(300), _kf(310, enabled=False)]], frames_count=440)
    conversion = convert_labelstudio([task], "ls.json")
    tracks = conversion.entries[0]["box_infos"]
    assert tracks[0][-1] == {"frame": 440, "bbox": tracks[0][1]["bbox"], "enabled": False}
    assert [kf["frame"] for kf in tracks[1]] == [200, 440]
    assert [kf["frame"] for kf in tracks[2]] == [300, 310]  # closed by the annotator: unchanged
    assert any("2 track(s) end on an enabled keyframe" in p.message for p in conversion.problems)
    kept = convert_labelstudio([task], "ls.json", open_track_end="last_keyframe").entries[0]["box_infos"]
    assert [len(t) for t in kept] == [2, 1, 2]


def test_labelstudio_bad_tasks_are_named_and_left_out():
    rotated = _task([[_kf(10, rotation=15)]], task_id=7)
    two_annotators = _task([[_kf(10)]], task_id=8)
    two_annotators["annotations"].append(copy.deepcopy(two_annotators["annotations"][0]))
    no_caption = _task([[_kf(10)]], task_id=9)
    del no_caption["data"]["category"]
    empty = _task([[]], task_id=10)
    conversion = convert_labelstudio(
        [rotated, two_annotators, no_caption, empty, _task([[_kf(5)]])], "ls.json"
    )
    assert len(conversion.entries) == 1 and conversion.origins == ["task 1 (#4 in the export)"]
    by_task = {p.origin.split()[1]: p for p in conversion.errors}
    assert "rotated boxes" in by_task["7"].message
    assert "2 completed annotations" in by_task["8"].message
    assert "no global caption" in by_task["9"].message
    assert "no videorectangle region with keyframes" in by_task["10"].message


def _clip(spans, caption="一个正常视频。", region="人们走路。"):
    return {"timestamps": spans, "global": {"Caption": caption}, "region": [{"caption": region}]}


def test_normal_dict_spans_placeholders_and_flat_entries():
    data = {
        "A.mp4": {"A_1.mp4": _clip([[0.0, 6.0]]), "A_2.mp4": _clip([[6.0, 12.5]])},
        "B.mp4": {"B_1.mp4": _clip([[0.0, 0.0]]), "B_2.mp4": _clip([[0.0, 0]])},  # never measured
        "C.mp4": {"C_1.mp4": _clip([[0.0, 9.0]]), "C_2.mp4": _clip([[0.0, 0]])},  # one sibling measured
        "A_3.mp4": _clip([[12.5, 20.0]]),  # flat: a clip of A.mp4 by its id
        "D.mp4": {"D_1.mp4": _clip([[30.0, 20.0]])},  # inverted
    }
    assert detect_format(data, "n.json") == "normal_dict"
    conversion = convert_normal_dict(data, "n.json", video_prefix="Normal/")
    spans = [(e["video"], e["timestamps"]) for e in conversion.entries]
    assert spans == [
        ("Normal/A.mp4", [0.0, 6.0]),
        ("Normal/A.mp4", [6.0, 12.5]),
        ("Normal/A.mp4", [12.5, 20.0]),
        ("Normal/B.mp4", None),  # both placeholders share one caption: one whole-video clip
        ("Normal/C.mp4", [0.0, 9.0]),
    ]
    assert all(e["label"] == "normal" and e["box_infos"] == [[]] for e in conversion.entries)
    (error,) = conversion.errors
    assert (error.video, error.field) == ("D.mp4", "D_1.mp4.timestamps[0]")
    warnings = [p.message for p in conversion.problems if not p.is_error]
    assert any("flat entry: clip 'A_3.mp4' is read as a clip of video 'A.mp4'" in w for w in warnings)
    assert any(
        "placeholder span in clip(s) ['C_2.mp4'] while sibling clips have spans" in w for w in warnings
    )
    assert any("read as 1 clip(s) over the whole video" in w for w in warnings)


def test_normal_dict_bad_clips_are_named():
    data = {"E.mp4": {"E_1.mp4": {"timestamps": [[0, 5]], "global": {"Caption": ""}, "region": ["Normal"]}}}
    conversion = convert_normal_dict(data, "n.json")
    assert not conversion.entries
    assert {p.field for p in conversion.errors} == {"E_1.mp4.global.Caption", "E_1.mp4.region[0]"}


def test_caption_only_dict_is_refused_whole():
    data = {
        "X.mp4": {"global": {"Caption": ""}, "region": ["Repeat"]},
        "Y.mp4": {"global": {"Caption": "a"}, "region": []},
    }
    with pytest.raises(ManifestError) as error:
        convert_normal_dict(data, "c.json")
    text = str(error.value)
    assert "caption-only dict: none of its 2 entries has timestamps" in text
    assert "1 empty global captions (global.Caption) in 1 entries, e.g. ['X.mp4']" in text
    assert "1 entries without regions in 1 entries, e.g. ['Y.mp4']" in text
    assert "'Repeat' x1" in text


def test_unknown_and_misplaced_files_are_refused_by_name():
    with pytest.raises(ManifestError, match="hard-negative file"):
        detect_format({"items": []}, "hn.json")
    with pytest.raises(ManifestError, match=r"first item \(\['foo'\]\)"):
        detect_format([{"foo": 1}], "x.json")
