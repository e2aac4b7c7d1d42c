"""A hard negative equal to its region's own caption (by caption key) is dropped at read time and counted."""

import json

from fgclip.data.errors import WARNING
from fgclip.data.formats import DataOptions, load_manifest
from fgclip.data.formats.cliplist import read_hard_negatives
from fgclip.data.text import caption_key
from fgclip.tools.check import CheckOptions, check_manifests

ENTRY = {
    "video": "a/Abuse001.mp4",
    "global_caption": "a man hits a woman",
    "region_captions": ["A man hits.", "a woman falls"],
    "box_infos": [[{"frame": 0, "bbox": [0.1, 0.2, 0.5, 0.9]}], [{"frame": 0, "bbox": [0.5, 0.2, 0.9, 0.9]}]],
    "timestamps": None,
}
# Region 0: two spellings of its own caption (same caption key) among three negatives; region 1: none.
NEGATIVES = {
    "items": [
        {"video": ENTRY["video"], "region_index": 0, "hard_negative": ["a man hits", "a man kicks", "A  man HITS!"]},
        {"video": ENTRY["video"], "region_index": 1, "hard_negative": ["a woman stands"]},
    ]
}  # fmt: skip


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _read(tmp_path):
    negatives = read_hard_negatives(_write(tmp_path, "hn.json", NEGATIVES))
    return load_manifest(_write(tmp_path, "m.json", [ENTRY]), hard_negatives=negatives)


def test_negatives_equal_to_the_positive_are_dropped_and_counted(tmp_path):
    result = _read(tmp_path)
    region, other = result.clips[0].regions
    assert region.hard_negatives == ("a man kicks",)
    assert all(caption_key(n) != caption_key(region.caption) for n in region.hard_negatives)
    assert other.hard_negatives == ("a woman stands",)
    assert result.hard_negatives_dropped == 2
    (warning,) = [p for p in result.problems if "hard negative" in p.message]
    assert (
        warning.severity == WARNING
        and warning.field == "region_captions[0]"
        and "2 hard negative" in warning.message
    )


def test_image_records_drop_negatives_equal_to_the_short_expression(tmp_path):
    record = {
        "f_path": "img.png",
        "caption": "a red square beside a blue circle",
        "bbox_info": [
            {"bbox": [0.1, 0.1, 0.4, 0.4], "short_expr": "a red square", "flag_short_neg": 1,
             "short_expr_negs": {"0": "A red square.", "1": "a green square"}},
        ],
    }  # fmt: skip
    result = load_manifest(_write(tmp_path, "images.json", [record]))
    assert result.clips[0].regions[0].hard_negatives == ("a green square",)
    assert result.hard_negatives_dropped == 1
    assert [p.severity for p in result.problems] == [WARNING]


def test_data_check_summary_reports_the_dropped_count(tmp_path):
    manifest = _write(tmp_path, "m.json", [ENTRY])
    options = CheckOptions(
        DataOptions(hard_negatives=(str(_write(tmp_path, "hn.json", NEGATIVES)),)), check_videos=False
    )
    report = check_manifests([str(manifest)], options)
    assert report.summary["hard negatives dropped (equal to their region's caption)"] == 2
