"""Clip-list reader: bad entries are reported with file, entry, video and field — all of them at once."""

import json

import pytest

from fgclip.data.errors import ManifestError
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
    no_span = dict(NORMAL, timestamps=None)
    path = _write(tmp_path, [GOOD, bad_box, mismatch, empty_caption, no_span])
    with pytest.raises(ManifestError) as error:
        read_clip_list(path)
    text = str(error.value)
    assert "5 problem" not in text  # entry 0 is fine
    assert f"{path}, entry 1, video 'a/Abuse001.mp4', field 'box_infos[0][0].bbox'" in text
    assert "entry 2" in text and "1 tracks for 2 region captions" in text
    assert "entry 3" in text and "region_captions[0]" in text
    assert "entry 4" in text and "timestamps" in text
    assert len(error.value.problems) == 4


def test_hard_negative_duplicates_are_refused(tmp_path):
    item = {"video": "a.mp4", "region_index": 0, "hard_negative": ["x"]}
    path = _write(tmp_path, {"items": [item, item]}, "hn.json")
    with pytest.raises(ManifestError, match="duplicate item for region 0"):
        read_hard_negatives(path)
