"""Every real annotation file (shared/data/real) through its reader: what parses, what is refused, and why.

Skipped, with the reason, when the shared folder is not beside the checkout.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from stand_ins import real_data_dir

from fgclip.data.errors import ManifestError
from fgclip.data.formats import load_manifest
from fgclip.data.formats.cliplist import ReadOptions, read_clip_list
from fgclip.data.leakage import find_leakage

SKIP = ReadOptions(invalid_entries="skip")


@pytest.fixture(scope="module")
def real():
    return real_data_dir()


@pytest.fixture(scope="module")
def v3(real):
    return load_manifest(real / "fgclip_vad" / "ucf_fgclip_with_v3.json")


def test_clip_list_reads_on_the_25fps_grid_with_quirks_reported(v3):
    assert v3.format == "cliplist" and v3.num_entries == 2247
    # The first entry: three single-keyframe regions at annotation frames 192, 816, 1912 (25 fps).
    first = v3.clips[0]
    assert first.sample_id == "ucf_fgclip_with_v3.json:0" and first.is_abnormal
    assert [r.track.keyframes[0].time_s for r in first.regions] == [192 / 25, 816 / 25, 1912 / 25]
    assert v3.boxes_clipped == 29  # the float-error coordinates, clipped into [0, 1]
    # Only the entries whose tracks cannot be paired with their captions are errors; each is named.
    assert v3.skipped_entries == [1814, 2063, 2111, 2137, 2140, 2179, 2185, 2187, 2242]
    assert all(p.field == "box_infos" and "region captions" in p.message for p in v3.errors)
    assert len(v3.clips) == 2247 - 9
    warned = Counter(p.field for p in v3.warnings)
    assert warned["timestamps"] == 23  # normal clips without a span: the whole video
    normal_whole = [c for c in v3.clips if not c.is_abnormal and c.timestamps is None]
    assert len(normal_whole) == 23


def test_clip_list_refused_by_default_and_read_when_skipping(real):
    path = real / "fgclip_vad" / "ucf_fgclip_with_v3.json"
    with pytest.raises(ManifestError, match="entry 2063") as error:
        read_clip_list(path)
    assert len(error.value.problems) == 9
    assert len(read_clip_list(path, options=SKIP)) == 2238


def test_label_studio_export_converts_on_its_own_grid(real):
    result = load_manifest(real / "fgclip_vad" / "msad_bbox.json")
    assert result.format == "labelstudio" and result.annotation_fps == 25.0
    assert result.num_entries == 218 and len(result.clips) == 218 and not result.errors
    raw = json.loads((real / "fgclip_vad" / "msad_bbox.json").read_text())
    sequence = raw[0]["annotations"][0]["result"][0]["value"]["sequence"]
    track = result.clips[0].regions[0].track
    # Label Studio's own `time` (= frame / 25) is the instant each keyframe is placed at.
    assert [k.time_s for k in track.keyframes] == pytest.approx([kf["time"] for kf in sequence])
    assert [k.enabled for k in track.keyframes] == [kf["enabled"] for kf in sequence]
    x, y, w, h = (sequence[0][k] / 100 for k in ("x", "y", "width", "height"))
    assert track.keyframes[0].box == pytest.approx((x, y, x + w, y + h))
    assert (
        str(result.clips[0].video_key)
        == "MSAD/MSAD_Videos/MSAD_anomaly_videos/Object_falling/Object_falling_1.mp4"
    )
    assert (
        result.clips[0].global_caption == "Object falling" and result.clips[0].regions[0].caption == "Anomaly"
    )
    messages = " ".join(p.message for p in result.warnings)
    assert "87 track(s) end on an enabled keyframe" in messages and "has no keyframes" in messages


def test_normal_dict_converts_with_placeholders_and_flat_entries_reported(real):
    path = real / "fgclip_vad" / "ucf_normal_videos_1_240_finally.json"
    result = load_manifest(path)
    assert result.format == "normal_dict" and result.num_entries == 926
    (inverted,) = result.errors
    assert inverted.video == "Normal_Videos141_x264.mp4" and "[272.0, 209.18]" in inverted.message
    assert all(not c.is_abnormal and c.regions[0].track is None for c in result.clips)
    whole = [c for c in result.clips if c.timestamps is None]
    kinds = Counter(p.message.split(":")[0] for p in result.warnings)
    assert len(whole) == 710 and kinds["flat entry"] == 10
    assert result.clips[0].global_caption == "一个场景为办公室的正常视频。"
    assert result.clips[0].timestamps == (0.0, 6.0)
    with pytest.raises(ManifestError, match="Normal_Videos141_x264_3.mp4.timestamps"):
        load_manifest(path).check("error")


def test_caption_only_dict_is_refused_with_a_report(real):
    with pytest.raises(ManifestError) as error:
        load_manifest(real / "fgclip_vad" / "ucf_anomaly_caption_2.json")
    text = str(error.value)
    assert "caption-only dict: none of its 1900 entries has timestamps" in text
    assert "1708 empty global captions" in text
    assert "1705 entries without regions" in text
    assert '130 bare-string regions (expected {"caption": ...})' in text
    assert "'Normal' x2, 'Repeat' x1" in text


def test_leakage_against_the_ucf_test_list(real, v3):
    report = find_leakage(v3.clips, real / "ucf_crime" / "Anomaly_Test.txt")
    assert report.num_test_videos == 290
    assert len(report.clips_by_video) == 237
    assert (len(report.abnormal_videos), len(report.normal_videos)) == (138, 99)
    assert report.entry_counts() == (138, 273)
    # The temporal-annotation file names the same videos.
    again = find_leakage(v3.clips, real / "ucf_crime" / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt")
    assert set(again.clips_by_video) == set(report.clips_by_video)
