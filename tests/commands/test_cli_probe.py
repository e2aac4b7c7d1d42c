"""The start-up video probe in `fgclip train` (the same findings and wording as `fgclip data check`), clips
failing to decode mid-run, and `fgclip data check --scan`, through the real entry point on tiny runs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from stand_ins import cut_in_half, faststart_copy, faststart_video, garbage_mid_file  # noqa: E402

from fgclip import checks  # noqa: E402
from fgclip.cli import main  # noqa: E402

TINY = ("--max_steps", "2", "--per_device_batch_size", "3", "--save_steps", "2")
BROKEN = "videos/Growing/Growing0002_x264.mp4"  # entry 4 of the tiny set's train.json
LATE = 3  # entry 3: its keyframes are moved past its video's end
CLAMPED = 0  # entry 0: its span is moved to end past its video's end (a warning)


@pytest.fixture
def bad_synth(tiny_synth, tmp_path) -> Path:
    """A copy of the tiny set with one unreadable video, one track after its video's end, one long span."""
    synth = tmp_path / "synth"
    shutil.copytree(tiny_synth, synth)
    (synth / BROKEN).write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing after the header" * 10)
    entries = json.loads((synth / "train.json").read_text())
    for keyframe in entries[LATE]["box_infos"][0]:
        keyframe["frame"] += 100  # 4 s past the start on the 25 fps grid: after the 4 s video's end
    entries[CLAMPED]["timestamps"] = [0.0, 6.0]
    (synth / "train.json").write_text(json.dumps(entries))
    return synth


def _data_check(synth: Path, capsys) -> dict:
    code = main(["data", "check", str(synth / "train.json"), "--video-root", str(synth), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    return report


def test_train_stops_before_step_1_naming_each_bad_video_as_data_check_does(
    bad_synth, tmp_path, train_args, capsys
):
    report = _data_check(bad_synth, capsys)
    assert {(p["entry"], p["field"]) for p in report["errors"]} == {
        (4, "video"),
        (LATE, "region 0 keyframes"),
    }
    out = tmp_path / "run"
    assert main(train_args(bad_synth, out, *TINY)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    error_lines = err[err.index("fgclip train: ") :].splitlines()
    assert error_lines[0].startswith(
        "fgclip train: 2 error(s) in the training videos (data.invalid_entries=error"
    )
    manifest = str(bad_synth / "train.json")
    for problem in report[
        "errors"
    ]:  # one line per bad video: file, entry, video, field, data check's message
        line = (f"  {manifest}, entry {problem['entry']}, video {problem['video']!r}, field {problem['field']!r}: "
                f"{problem['message']}")  # fmt: skip
        assert line in error_lines
    assert len(error_lines) == 3
    (warning,) = [p for p in report["warnings"] if p["field"] == "timestamps"]
    assert warning["message"] == "span ends at 6.00 s, 2.00 s past the video's end: clamped"
    assert f"  {manifest}, entry {CLAMPED}, video {warning['video']!r}, field 'timestamps': warning: " in err
    assert not (out / "metrics.jsonl").exists() and not list(out.glob("checkpoint-*"))


def test_train_with_skip_leaves_the_clips_out_and_names_them(
    bad_synth, tmp_path, train_args, read_rows, capsys
):
    out = tmp_path / "run"
    assert main(train_args(bad_synth, out, *TINY, "--data.invalid_entries", "skip")) == 0
    err = capsys.readouterr().err
    assert (
        "[data] WARNING 2 of 6 training clips LEFT OUT for their videos (data.invalid_entries=skip):" in err
    )
    assert f"entry 4, video {BROKEN!r}, field 'video': video {bad_synth / BROKEN}: cannot be opened" in err
    assert f"entry {LATE}, video " in err and "lies past the video's end (4.00 s)" in err
    assert len(read_rows(out)) == 2 and (out / "model").is_dir()


@pytest.mark.parametrize("invalid_entries", ["error", "skip"])
def test_doctor_reports_what_the_start_up_probe_would_stop_on(
    bad_synth, tmp_path, train_args, capsys, invalid_entries
):
    argv = ["doctor", *train_args(bad_synth, tmp_path / "run")[1:], "--data.invalid_entries", invalid_entries]
    assert main([*argv, "--json"]) == (1 if invalid_entries == "error" else 0)
    findings = [f for f in json.loads(capsys.readouterr().out) if f["check"] == "data.videos"]
    severities = {"error": "error", "skip": "warning"}[invalid_entries]
    (unusable,) = [f for f in findings if "unusable videos" in f["message"]]
    assert unusable["severity"] == severities
    assert unusable["message"].startswith("2 of 6 training clips have unusable videos")
    (clamped,) = [f for f in findings if "video warning" in f["message"]]
    assert clamped["severity"] == "warning" and "span ends at 6.00 s" in clamped["message"]


def test_a_grid_read_too_fine_is_a_warning_of_data_check_and_of_train(tmp_path, train_args, capsys):
    """25 fps frame numbers read as 50 fps: every keyframe lands early, none past the end (no error)."""
    synth = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(synth), "--num-videos", "24", "--seed", "1"]) == 0
    capsys.readouterr()
    check = ["data", "check", str(synth / "train.json"), "--video-root", str(synth), "--json"]
    assert main(check) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []  # read on the right grid: nothing
    assert main([*check, "--annotation-fps", "50"]) == 0
    (warning,) = json.loads(capsys.readouterr().out)["warnings"]
    assert (warning["entry"], warning["field"]) == (None, "keyframes")
    assert "tracked entries end in the first" in warning["message"]
    out = tmp_path / "run"
    assert main(train_args(synth, out, *TINY, "--data.annotation_fps", "50")) == 0
    assert (
        f"{synth / 'train.json'}, field 'keyframes': warning: {warning['message']}" in capsys.readouterr().err
    )


def test_a_second_run_reads_the_probe_index(tiny_synth, tmp_path, train_args, monkeypatch):
    index = tmp_path / "probe.json"
    assert main(train_args(tiny_synth, tmp_path / "one", *TINY, "--data.video_probe_index", str(index))) == 0
    assert len(json.loads(index.read_text())["entries"]) == 6

    def reopened(path):
        raise AssertionError(f"{path} probed again")

    monkeypatch.setattr("fgclip.data.probe.probe_video", reopened)
    assert main(train_args(tiny_synth, tmp_path / "two", *TINY, "--data.video_probe_index", str(index))) == 0


@pytest.fixture
def corrupted_after_probe(tiny_synth, tmp_path, monkeypatch) -> Path:
    """A copy of the tiny set whose entry-4 video is overwritten right after the start-up probe passed it."""
    synth = tmp_path / "synth"
    shutil.copytree(tiny_synth, synth)
    probe = checks.probe_clips

    def probe_then_corrupt(*args, **kwargs):
        clips = probe(*args, **kwargs)
        data = bytearray((synth / BROKEN).read_bytes())
        data[len(data) // 3 :] = b"\x00" * (len(data) - len(data) // 3)  # the header survives, the frames not
        (synth / BROKEN).write_bytes(bytes(data))
        return clips

    monkeypatch.setattr(checks, "probe_clips", probe_then_corrupt)
    return synth


def test_a_clip_failing_mid_run_is_named_and_replaced(
    corrupted_after_probe, tmp_path, train_args, read_rows, capsys
):
    out = tmp_path / "run"
    assert main(train_args(corrupted_after_probe, out, *TINY)) == 0  # 2 steps of 3: every clip is drawn
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        f"[data] clip train.json:4 ({corrupted_after_probe / BROKEN}) cannot be decoded (1 of at most 10 such clips, data.max_failed_clips): "
        in err
    )
    assert "[data] train.json:4 (" in err and ") in epoch 0 (its video failed to decode)" in err
    assert len(read_rows(out)) == 2 and (out / "model").is_dir()


def test_too_many_failing_clips_stop_the_run_with_one_line(
    corrupted_after_probe, tmp_path, train_args, capsys
):
    out = tmp_path / "run"
    assert main(train_args(corrupted_after_probe, out, *TINY, "--data.max_failed_clips", "0")) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("fgclip train:")]
    assert line.startswith("fgclip train: 1 distinct clips failed to decode during training (more than "
                           "data.max_failed_clips=0): train.json:4 (")  # fmt: skip
    assert line.endswith(
        "Run `fgclip data check --scan` on the manifests and fix or remove the videos it names."
    )
    assert "Traceback" not in err


def test_data_check_scan_finds_videos_cut_short_or_garbled(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    full = faststart_video(videos / "full.mp4")
    cut_in_half(full, videos / "half.mp4")
    garbage_mid_file(full, videos / "garbage.mp4")
    entries = [
        {"video": f"{name}.mp4", "global_caption": "a scene", "region_captions": ["it"], "box_infos": [[]],
         "timestamps": [0.0, 3.0]}
        for name in ("full", "half", "garbage")
    ]  # fmt: skip
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps(entries))
    check = ["data", "check", str(manifest), "--video-root", str(videos), "--json"]
    assert main(check) == 0  # the headers are intact: the default check cannot see it
    capsys.readouterr()
    assert main([*check, "--scan"]) == 1
    errors = {p["video"]: p["message"] for p in json.loads(capsys.readouterr().out)["errors"]}
    assert sorted(errors) == ["garbage.mp4", "half.mp4"]
    assert errors["half.mp4"].startswith(
        f"video {videos / 'half.mp4'}: the header promises 100 frames but only 49"
    )
    assert "packet 50 is malformed" in errors["garbage.mp4"]


@pytest.fixture
def garbled_mid_file(tiny_synth, tmp_path) -> Path:
    """A copy of the tiny set whose entry-4 video has garbage in its frames and an intact header (moov first):
    the start-up probe passes it, decoding past the damage fails."""
    synth = tmp_path / "synth"
    shutil.copytree(tiny_synth, synth)
    faststart = faststart_copy(synth / BROKEN, tmp_path / "faststart.mp4")
    garbage_mid_file(faststart, synth / BROKEN, length=1000)
    return synth


@pytest.mark.slow
def test_a_run_with_a_failing_clip_resumes_bit_exact(
    garbled_mid_file, tmp_path, train_args, read_rows, run_dir_after, capsys
):
    """6 steps straight equal 3 steps + `--resume latest` + 3 more, the broken clip replaced in every epoch."""
    run_args = (
        "--max_steps",
        "6",
        "--per_device_batch_size",
        "3",
        "--save_steps",
        "3",
        "--save_total_limit",
        "3",
        "--bank.size",
        "0",
    )
    straight = tmp_path / "straight"
    assert main(train_args(garbled_mid_file, straight, *run_args)) == 0
    straight_err = capsys.readouterr().err
    resumed = run_dir_after(straight, 3, tmp_path / "resumed")
    assert main(train_args(garbled_mid_file, resumed, *run_args, "--resume", "latest")) == 0
    final = [load_file(d / "checkpoint-6" / "model.safetensors") for d in (straight, resumed)]
    for key in final[0]:
        assert torch.equal(final[0][key], final[1][key]), f"{key} differs after resume"
    assert [r["loss"] for r in read_rows(straight)] == [r["loss"] for r in read_rows(resumed)]
    resumed_err = capsys.readouterr().err
    replaced = [line for line in straight_err.splitlines() if "replaced by" in line]
    assert len(replaced) >= 2 and all(line.startswith("[data] train.json:4 (") for line in replaced)
    after_resume = [line for line in replaced if "in epoch 0 " not in line]
    assert after_resume  # the resumed half replaces it too, with the same clips as the straight run
    assert [line for line in resumed_err.splitlines() if "replaced by" in line] == after_resume
