"""`fgclip data check / convert-labelstudio / convert-normal-dict / cache` through the real entry point."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from stand_ins import index_video, real_data_dir  # noqa: E402

from fgclip.cli import main  # noqa: E402
from fgclip.data.formats.cliplist import read_clip_list  # noqa: E402
from fgclip.data.frame_cache import FrameCache  # noqa: E402

TRACK = [
    {"frame": 25, "bbox": [0.1, 0.1, 0.5, 0.5]},
    {"frame": 50, "bbox": [0.2, 0.1, 0.6, 0.5], "enabled": False},
]


def _entry(video, **changes):
    entry = {
        "video": video,
        "global_caption": "a man falls",
        "region_captions": ["a man falls"],
        "box_infos": [TRACK],
        "timestamps": None,
    }
    return {**entry, **changes}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_videos")
    index_video(root / "clips" / "ok.mp4", seconds=4.0, fps=30.0, size=32)
    index_video(root / "clips" / "short.mp4", seconds=1.0, fps=30.0, size=32)
    (root / "clips" / "corrupt.mp4").write_bytes(b"\x00\x01garbage" * 64)
    return root


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_check_without_videos_names_every_error_and_reports_leakage(tmp_path, capsys):
    manifest = _write(
        tmp_path / "m.json",
        [
            _entry("set/Abuse028_x264.mp4"),
            _entry("set/b.mp4", region_captions=["x", "y"]),
            _entry("set/c.mp4", global_caption=" "),
            _entry("set/Normal_Videos_003_x264.mp4", box_infos=[[]], timestamps=[0.0, 4.0]),
            _entry("set/Abuse028_x264.mp4"),
        ],
    )
    test_list = tmp_path / "test.txt"
    test_list.write_text(
        "Abuse/Abuse028_x264.mp4\nTesting_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4\nx/y.mp4\n"
    )
    code = main(["data", "check", str(manifest), "--no-video", "--test-list", str(test_list)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{manifest}, entry 1, video 'set/b.mp4', field 'box_infos': 1 tracks (1 with keyframes)" in out
    assert f"{manifest}, entry 2, video 'set/c.mp4', field 'global_caption': missing or empty" in out
    assert "entry 4, video 'set/Abuse028_x264.mp4': warning: duplicate of m.json:0" in out
    assert "test-set leakage: 2 of the 3 test videos" in out
    assert "abnormal: 1 videos, 2 abnormal entries" in out and "normal:   1 videos, 1 normal entries" in out
    assert "2 error(s), 1 warning(s) -> exit code 1" in out
    code = main(["data", "check", str(manifest), "--no-video", "--test-list", str(test_list), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["exit_code"] == 1 and len(report["errors"]) == 2
    assert report["leakage"]["abnormal_videos"] == ["Abuse028_x264"]
    assert report["leakage"]["entries"]["Abuse028_x264"] == ["m.json:0", "m.json:4"]
    assert report["summary"]["clips"] == 3 and report["summary"]["abnormal clips"] == 2


def test_check_with_videos_finds_missing_corrupt_and_too_short_videos(videos, tmp_path, capsys):
    manifest = _write(
        tmp_path / "m.json",
        [
            _entry("clips/ok.mp4"),
            _entry("clips/missing.mp4"),
            _entry("clips/corrupt.mp4"),
            _entry("clips/short.mp4"),  # keyframes at 1 s and 2 s in a 1 s video
            _entry("clips/short.mp4", box_infos=[[]], timestamps=[3.0, 5.0]),
        ],
    )
    code = main(["data", "check", str(manifest), "--video-root", str(videos), "--json"])
    report = json.loads(capsys.readouterr().out)
    errors = {(p["entry"], p["video"], p["field"]): p["message"] for p in report["errors"]}
    assert code == 1 and len(report["errors"]) == 4, errors
    assert {p["manifest"] for p in report["errors"]} == {str(manifest)}
    assert "file not found" in errors[(1, "clips/missing.mp4", "video")]
    assert "cannot be opened" in errors[(2, "clips/corrupt.mp4", "video")]
    assert errors[(3, "clips/short.mp4", "region 0 keyframes")].startswith("a keyframe at 2.00 s")
    assert errors[(4, "clips/short.mp4", "timestamps")].startswith("span starts at 3.00 s")
    clean = _write(tmp_path / "clean.json", [_entry("clips/ok.mp4")])
    assert main(["data", "check", str(clean), "--video-root", str(videos)]) == 0
    assert "0 error(s), 0 warning(s) -> exit code 0" in capsys.readouterr().out


def test_check_refuses_a_caption_only_dict_by_name(tmp_path, capsys):
    path = _write(tmp_path / "captions.json", {"a.mp4": {"global": {"Caption": ""}, "region": ["Normal"]}})
    assert main(["data", "check", str(path), "--no-video"]) == 1
    out = capsys.readouterr().out
    assert f"{path}: REFUSED, not a usable manifest" in out and "caption-only dict" in out


def test_check_real_clip_list_against_the_ucf_test_list(capsys):
    real = real_data_dir()
    manifest = real / "fgclip_vad" / "ucf_fgclip_with_v3.json"
    code = main(
        [
            "data",
            "check",
            str(manifest),
            "--no-video",
            "--test-list",
            str(real / "ucf_crime" / "Anomaly_Test.txt"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1  # the nine entries whose tracks cannot be paired with their captions
    assert "test-set leakage: 237 of the 290 test videos" in out
    assert (
        "abnormal: 138 videos, 138 abnormal entries" in out
        and "normal:   99 videos, 273 normal entries" in out
    )


def _ls_task(task_id, frames, category="Fighting"):
    sequence = [
        {
            "frame": f,
            "x": 10.0,
            "y": 10.0,
            "width": 20.0,
            "height": 20.0,
            "enabled": True,
            "rotation": 0,
            "time": f / 25,
        }
        for f in frames
    ]
    value = {"framesCount": 200, "duration": 8.0, "sequence": sequence, "labels": ["Anomaly"]}
    return {
        "id": task_id,
        "annotations": [{"result": [{"type": "videorectangle", "value": value}], "was_cancelled": False}],
        "data": {"video": f"/data/local-files/?d=MSAD/{task_id}.mp4", "category": category},
    }


def test_convert_labelstudio_writes_a_clip_list_or_refuses(tmp_path, capsys):
    export = _write(
        tmp_path / "export.json", [_ls_task(1, [10, 30]), _ls_task(2, [0])]
    )  # frame 0: not 1-based
    out = tmp_path / "clips.json"
    assert main(["data", "convert-labelstudio", str(export), "-o", str(out)]) == 1
    assert not out.exists()
    assert "must be a frame number >= 1 (Label Studio counts from 1)" in capsys.readouterr().err
    assert main(["data", "convert-labelstudio", str(export), "-o", str(out), "--skip-invalid"]) == 0
    assert (
        "wrote 1 clip-list entries on a 25-fps annotation grid from 2 source entries"
        in capsys.readouterr().out
    )
    (clip,) = read_clip_list(out)
    assert clip.video_key == "MSAD/1.mp4" and [k.time_s for k in clip.regions[0].track.keyframes] == [
        0.4,
        1.2,
        8.0,
    ]


def test_convert_normal_dict_writes_normal_clips(tmp_path, capsys):
    clip = {
        "timestamps": [[0.0, 2.0]],
        "global": {"Caption": "a street"},
        "region": [{"caption": "cars pass"}],
    }
    bad = dict(clip, timestamps=[[5.0, 1.0]])
    source = _write(tmp_path / "normal.json", {"N1.mp4": {"N1_1.mp4": clip, "N1_2.mp4": bad}})
    out = tmp_path / "clips.json"
    assert (
        main(["data", "convert-normal-dict", str(source), "-o", str(out), "--video-prefix", "Normal/"]) == 1
    )
    assert "N1_2.mp4.timestamps[0]" in capsys.readouterr().err and not out.exists()
    assert main(["data", "convert-normal-dict", str(source), "-o", str(out), "--skip-invalid"]) == 0
    (read,) = read_clip_list(out)
    assert (read.video_key, read.timestamps, read.label) == ("N1.mp4", (0.0, 2.0), 0)


def test_cache_command_extracts_every_clip_span(videos, tmp_path, capsys):
    manifest = _write(
        tmp_path / "m.json",
        [_entry("clips/ok.mp4"), _entry("clips/ok.mp4", box_infos=[[]], timestamps=[0.5, 1.0])],
    )
    out = tmp_path / "cache"
    code = main(
        ["data", "cache", str(manifest), "--video-root", str(videos), "--out", str(out), "--size", "32",
         "--cache-fps", "10", "--context-s", "0.5"]
    )  # fmt: skip
    assert code == 0
    assert "cached" in capsys.readouterr().out
    cache = FrameCache(out, size=(32, 32))
    # The track (1-2 s) plus 0.5 s of context, which holds the normal clip's 0.5-1 s: one merged span.
    assert cache.spans(videos / "clips" / "ok.mp4") == ((0.5, 2.5),)
    assert len(cache.frame_times(videos / "clips" / "ok.mp4")) == 21  # 10 fps over 2 s, both ends


def test_cache_command_writes_raw_frames_when_asked(videos, tmp_path, capsys):
    from fgclip.data import frame_cache

    manifest = _write(tmp_path / "m.json", [_entry("clips/ok.mp4")])
    out = tmp_path / "cache"
    argv = ["data", "cache", str(manifest), "--video-root", str(videos), "--out", str(out), "--size", "32",
            "--encoding", "raw"]  # fmt: skip
    assert main(argv) == 0 and "fps, raw)" in capsys.readouterr().out
    header = frame_cache._read_header(FrameCache(out).path_for(videos / "clips" / "ok.mp4"))
    assert header.encoding == "raw" and set(header.lengths.tolist()) == {32 * 32 * 3}


def test_cache_refuses_a_manifest_with_errors_unless_skipping(videos, tmp_path, capsys):
    manifest = _write(
        tmp_path / "m.json", [_entry("clips/ok.mp4"), _entry("clips/ok.mp4", region_captions=[])]
    )
    command = [
        "data",
        "cache",
        str(manifest),
        "--video-root",
        str(videos),
        "--out",
        str(tmp_path / "c"),
        "--size",
        "32",
    ]
    assert main(command) == 1
    assert "entry 1" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert main(command + ["--skip-invalid"]) == 0
    assert "1 error(s): bad entries LEFT OUT" in capsys.readouterr().err  # the training run's own summary


def test_cache_reads_the_stand_in_s_input_size_without_size(videos, tmp_path, capsys):
    manifest = _write(tmp_path / "m.json", [_entry("clips/ok.mp4")])
    out = tmp_path / "cache"
    argv = [
        "data",
        "cache",
        str(manifest),
        "--video-root",
        str(videos),
        "--out",
        str(out),
        "--model.init",
        "standin",
    ]
    assert main(argv) == 0 and "(64x64," in capsys.readouterr().out  # the shipped stand-in's 64 px
