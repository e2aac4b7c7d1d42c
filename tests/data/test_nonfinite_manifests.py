"""Non-finite and non-integer numbers in manifests are errors naming the manifest, entry, video and field,
in every reader and in `fgclip data check` (console text and `--json` objects)."""

from __future__ import annotations

import json
import math
import random

import pytest
from stand_ins import real_data_dir

from fgclip.cli import main
from fgclip.data.formats import load_manifest
from fgclip.data.formats.cliplist import MAX_FRAME, parse_frame
from fgclip.data.formats.labelstudio import convert_labelstudio
from fgclip.data.formats.normal_dict import convert_normal_dict

VIDEO = "set/Abuse001_x264.mp4"


def _entry(**changes) -> dict:
    entry = {
        "video": VIDEO,
        "global_caption": "a man falls",
        "region_captions": ["a man falls"],
        "box_infos": [
            [{"frame": 25, "bbox": [0.1, 0.1, 0.5, 0.5]}, {"frame": 50, "bbox": [0.2, 0.1, 0.6, 0.5]}]
        ],
        "timestamps": None,
    }
    return {**entry, **changes}


def _track(frame=25, bbox=(0.1, 0.1, 0.5, 0.5)) -> list:
    return [[{"frame": frame, "bbox": list(bbox)}]]


BAD = [  # (entry, field, message start)
    (
        _entry(box_infos=_track(bbox=(0.1, math.nan, 0.5, 0.5))),
        "box_infos[0][0].bbox",
        "non-finite coordinate",
    ),
    (
        _entry(box_infos=_track(bbox=(0.1, 0.1, math.inf, 0.5))),
        "box_infos[0][0].bbox",
        "non-finite coordinate",
    ),
    (_entry(timestamps=[0.0, math.inf]), "timestamps", "non-finite value"),
    (_entry(timestamps=[math.nan, 2.0]), "timestamps", "non-finite value"),
    (
        _entry(box_infos=_track(frame=1e12)),
        "box_infos[0][0].frame",
        "frame 1000000000000.0 is past the largest",
    ),
    (
        _entry(box_infos=_track(frame=3.5)),
        "box_infos[0][0].frame",
        "must be an integer frame number, got 3.5",
    ),
    (_entry(box_infos=_track(frame=math.nan)), "box_infos[0][0].frame", "non-finite frame number"),
    (_entry(box_infos=_track(frame=-math.inf)), "box_infos[0][0].frame", "non-finite frame number"),
]


def _write(path, data):
    path.write_text(json.dumps(data))  # json.dumps writes NaN / Infinity, which json.loads reads back
    return path


@pytest.mark.parametrize(("entry", "field", "message"), BAD, ids=lambda v: str(v)[:40])
def test_reader_names_the_bad_number(tmp_path, entry, field, message):
    path = _write(tmp_path / "m.json", [_entry(), entry])
    read = load_manifest(path)
    assert len(read.clips) == 1 and len(read.errors) == 1
    problem = read.errors[0]
    assert (problem.file, problem.index, problem.video, problem.field) == (str(path), 1, VIDEO, field)
    assert problem.message.startswith(message), problem.message


def test_frame_numbers():
    assert parse_frame(12) == (12, None)
    assert parse_frame(12.0) == (12, None)  # an integral float, as some exporters write integers
    assert parse_frame(MAX_FRAME) == (MAX_FRAME, None)
    for bad in (MAX_FRAME + 1, 1e12, 3.5, -1, math.nan, True, "12"):
        assert parse_frame(bad)[0] is None, bad


def test_data_check_json_gives_objects(tmp_path, capsys):
    entries = [_entry()] + [entry for entry, _, _ in BAD]
    path = _write(tmp_path / "m.json", entries)
    assert main(["data", "check", str(path), "--no-video"]) == 1
    out = capsys.readouterr().out
    assert f"{path}, entry 1, video '{VIDEO}', field 'box_infos[0][0].bbox': non-finite coordinate" in out
    assert f"{len(BAD)} error(s)" in out

    assert main(["data", "check", str(path), "--no-video", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    expected = [
        {
            "manifest": str(path),
            "entry": i,
            "video": VIDEO,
            "field": field,
            "severity": "error",
            "origin": None,
        }
        for i, (_, field, _) in enumerate(BAD, 1)
    ]
    assert [{k: v for k, v in p.items() if k != "message"} for p in report["errors"]] == expected
    assert all(p["message"].startswith(m) for p, (_, _, m) in zip(report["errors"], BAD, strict=True))


def test_converted_formats_refuse_non_finite_numbers(tmp_path):
    spans = convert_normal_dict(
        {
            "a.mp4": {
                "global": {"Caption": "a street"},
                "region": [{"caption": "a car"}],
                "timestamps": [[0.0, math.inf]],
            }
        },
        "normal.json",
        "",
    )
    assert [(p.field, p.message[:16]) for p in spans.errors] == [("a.mp4.timestamps[0]", "non-finite value")]
    task = {
        "id": 7,
        "data": {"video": "/data/upload/1/a.mp4", "caption": "a man falls"},
        "annotations": [
            {
                "result": [
                    {
                        "type": "videorectangle",
                        "value": {
                            "labels": ["a man"],
                            "sequence": [
                                {"frame": 1, "time": 0.04, "x": 10, "y": math.nan, "width": 20, "height": 20},
                                {"frame": 2, "time": math.inf, "x": 10, "y": 10, "width": 20, "height": 20},
                            ],
                        },
                    }
                ]
            }
        ],
    }
    converted = convert_labelstudio([task], "export.json", None, "video_end", None)
    assert any("x, y, width, height must be finite" in p.message for p in converted.errors), converted.errors
    assert converted.annotation_fps == 25.0  # the infinite time says nothing about the grid and is ignored


def test_nan_injected_into_the_real_manifest_is_reported(tmp_path, capsys):
    source = real_data_dir() / "fgclip_vad" / "ucf_fgclip_with_v3.json"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    entries = json.loads(source.read_text())
    with_tracks = [i for i, e in enumerate(entries) if any(e["box_infos"])]
    rng = random.Random(13)
    poisoned = sorted(rng.sample(with_tracks, 5))
    for i in poisoned:
        track = next(t for t in entries[i]["box_infos"] if t)
        track[0]["bbox"][rng.randrange(4)] = rng.choice([math.nan, math.inf, -math.inf])
    path = _write(tmp_path / "ucf_poisoned.json", entries)
    assert main(["data", "check", str(path), "--no-video", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    nonfinite = [p for p in report["errors"] if p["message"].startswith("non-finite coordinate")]
    assert [p["entry"] for p in nonfinite] == poisoned
    assert all(p["video"] == entries[p["entry"]]["video"] for p in nonfinite)
    assert all(p["field"].startswith("box_infos[") and p["field"].endswith("][0].bbox") for p in nonfinite)


@pytest.mark.parametrize("time", [math.nan, math.inf, "0.04"])
def test_a_label_studio_time_must_be_finite_seconds(time):
    sequence = [
        {"frame": 1, "time": time, "x": 10, "y": 10, "width": 20, "height": 20},
        {"frame": 2, "time": 0.08, "x": 10, "y": 10, "width": 20, "height": 20, "enabled": False},
    ]
    task = {
        "id": 7,
        "data": {"video": "/data/upload/1/a.mp4", "caption": "a man falls"},
        "annotations": [
            {"result": [{"type": "videorectangle", "value": {"labels": ["a man"], "sequence": sequence}}]}
        ],
    }
    converted = convert_labelstudio([task], "export.json", None, "video_end", None)
    fields = [(p.field, p.message) for p in converted.errors]
    assert ("result[0].value.sequence[0].time", f"must be finite seconds, got {time!r}") in fields, fields
