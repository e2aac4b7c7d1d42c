"""The start-up video probe (`fgclip.data.probe`), the packet scan, and clips replaced when decoding fails."""

from __future__ import annotations

import json
import os

import pytest
import torch
from stand_ins import cut_in_half, faststart_video, garbage_mid_file, index_video, read_index

from fgclip.data import probe as probe_module
from fgclip.data.epochs import EpochSeededDataset, TooManyFailedClips, item_seed
from fgclip.data.formats import ManifestRead
from fgclip.data.probe import (
    ProbeIndex,
    check_times,
    clip_problems,
    frame_shortfall,
    probe_media,
    scan_problem,
)
from fgclip.data.records import Clip, Keyframe, Region, Track
from fgclip.data.video import VideoError, iter_frames, scan_packets, video_frame_times


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    full = faststart_video(root / "full.mp4")  # 100 frames, 25 fps
    return {
        "full": full,
        "half": cut_in_half(full, root / "half.mp4"),
        "garbage": garbage_mid_file(full, root / "garbage.mp4"),
    }


def test_a_second_probe_reopens_only_the_videos_that_changed(tmp_path, monkeypatch):
    videos = [index_video(tmp_path / f"v{i}.mp4", 1.0 + i, fps=25) for i in range(3)]
    opened = []
    real = probe_module.probe_video
    monkeypatch.setattr(probe_module, "probe_video", lambda p: opened.append(p) or real(p))
    index_path = tmp_path / "cache" / "video_probe.json"
    first = probe_media(videos, index=ProbeIndex(index_path), workers=3)
    assert sorted(opened) == sorted(videos)
    assert [round(first[v].duration_s, 2) for v in videos] == [1.0, 2.0, 3.0]
    entries = json.loads(index_path.read_text())["entries"]
    assert len(entries) == 3 and all(str(v.resolve()) in " ".join(entries) for v in videos)

    opened.clear()
    again = probe_media(videos, index=ProbeIndex(index_path), workers=3)
    assert opened == [] and again == first  # every header from the index

    index_video(videos[1], 1.6, fps=25)  # rewritten: new size and mtime, so a new key
    os.utime(videos[1], ns=(1, 1))  # and a modification time no earlier write can share
    third = probe_media(videos, index=ProbeIndex(index_path), workers=3)
    assert opened == [videos[1]] and round(third[videos[1]].duration_s, 2) == 1.6
    assert len(json.loads(index_path.read_text())["entries"]) == 3  # the stale key is dropped


def test_unreadable_videos_are_indexed_with_their_error_and_missing_ones_never(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    missing = tmp_path / "missing.mp4"
    index_path = tmp_path / "index.json"
    probes = probe_media([broken, missing], index=ProbeIndex(index_path))
    assert probes[missing].error == "file not found"
    assert probes[broken].error.startswith("cannot be opened as a video")
    assert probes[broken].info is None
    (entry,) = json.loads(index_path.read_text())["entries"].values()
    assert entry["error"] == probes[broken].error


def test_a_foreign_or_torn_index_is_started_afresh(tmp_path):
    video = index_video(tmp_path / "v.mp4", 1.0, fps=25)
    index_path = tmp_path / "index.json"
    index_path.write_text('{"version": 1, "entries": {"x": ')  # torn by a crash
    assert probe_media([video], index=ProbeIndex(index_path))[video].error is None
    assert json.loads(index_path.read_text())["version"] == 1


def test_an_index_that_cannot_be_written_costs_a_warning_not_the_run(tmp_path, caplog):
    video = index_video(tmp_path / "v.mp4", 1.0, fps=25)
    (tmp_path / "a_file").write_text("")
    unwritable = tmp_path / "a_file" / "video_probe.json"  # its folder is a file: mkdir fails (also as root)
    assert probe_media([video], index=ProbeIndex(unwritable))[video].error is None
    assert f"probe index {unwritable} cannot be written" in caplog.text


def test_the_packet_scan_finds_what_the_header_hides(damaged):
    for name in ("full", "half", "garbage"):
        assert probe_media([damaged[name]])[damaged[name]].info.num_frames == 100  # the header: all intact
    assert scan_problem(damaged["full"]) is None
    half = scan_problem(damaged["half"])
    assert half.startswith("the header promises 100 frames but only 49 frames (up to ")
    assert "flagged corrupt" in half
    garbage = scan_problem(damaged["garbage"])
    assert garbage.startswith("the header promises 100 frames but only 50 frames (up to ")
    assert "packet 50 is malformed" in garbage
    assert scan_packets(damaged["full"]).num_packets == 100


def test_scan_results_are_indexed_too(damaged, tmp_path, monkeypatch):
    index_path = tmp_path / "index.json"
    first = probe_media([damaged["half"]], index=ProbeIndex(index_path), scan=True)[damaged["half"]]
    assert first.scan_problem.startswith("the header promises 100 frames")

    def no_scan(path):
        raise AssertionError(f"{path} scanned again")

    monkeypatch.setattr(probe_module, "scan_packets", no_scan)
    again = probe_media([damaged["half"]], index=ProbeIndex(index_path), scan=True)[damaged["half"]]
    assert again == first


def test_a_file_cut_short_decodes_up_to_the_cut_and_says_so(damaged):
    frames = list(iter_frames(damaged["half"], size=(32, 24)))
    shown = [read_index(image) for _, _, image in frames]
    # the 49 whole packets in decode order: frames 0..47 and the P-frame 51 (B-frames 48..50 came after it)
    assert shown == [*range(48), 51]
    assert [round(t * 25) for _, t, _ in frames] == shown  # each at its own presentation time
    assert len(video_frame_times(damaged["half"])) == 49
    assert frame_shortfall(damaged["half"], 49) == (
        f"{damaged['half']}: the header says 100 frames but only 49 can be read (truncated or corrupt file?); "
        "the frames after the cut are left out"
    )
    assert frame_shortfall(damaged["full"], 100) is None


def _clip(video, keyframe_times, timestamps=None) -> Clip:
    track = Track(tuple(Keyframe(t, (0.1, 0.1, 0.5, 0.5)) for t in keyframe_times))
    return Clip(
        sample_id="m.json:0", video=video, video_key=video.name, global_caption="a scene",
        regions=(Region("a box", track, label=1),), label=1, timestamps=timestamps,
    )  # fmt: skip


def test_keyframes_on_a_wrong_grid_are_named_with_both_rates(tmp_path):
    """Native frame numbers of a 50 fps video read on the default 25 fps grid land at twice their time."""
    video = index_video(tmp_path / "fast.mp4", 2.0, fps=50)
    info = probe_media([video])[video].info
    manifests = [
        ManifestRead(path=str(tmp_path / "m.json"), format="cliplist", num_entries=1, annotation_fps=25)
    ]
    (late,) = check_times(_clip(video, [90 / 25]), info, manifests)
    assert (late.file, late.index, late.field, late.is_error) == (
        str(tmp_path / "m.json"),
        0,
        "region 0 keyframes",
        True,
    )
    assert late.message == (
        "a keyframe at 3.60 s lies past the video's end (2.00 s): wrong annotation_fps (keyframes read on a 25 "
        "fps grid; the video is 50 fps), or the wrong video?"
    )
    (clamped,) = check_times(_clip(video, [1.0], timestamps=(0.5, 3.5)), info, manifests)
    assert not clamped.is_error and clamped.message.endswith("past the video's end: clamped")


@pytest.mark.parametrize(
    "ends, warned",
    [
        ([0.2, 0.3, 0.4, 0.45, 0.5, 0.3, 0.2, 0.4], True),  # 8 tracks, all in the first half
        ([0.2, 0.3, 0.4, 0.45, 0.5, 0.3, 0.2, 0.8], False),  # one ends late: the grid is plausible
        ([0.2, 0.3, 0.4, 0.45, 0.5, 0.3, 0.2], False),  # 7 tracks: too few to tell
    ],
)
def test_tracks_that_all_end_early_are_a_grid_read_too_fine(tmp_path, ends, warned):
    """25 fps frame numbers read as 50 fps halve every time: nothing lands past the end, everything early."""
    video = index_video(tmp_path / "v.mp4", 2.0, fps=25)
    probes = probe_media([video])
    manifests = [
        ManifestRead(path=str(tmp_path / "m.json"), format="cliplist", num_entries=8, annotation_fps=50)
    ]
    clips = [_clip(video, [0.0, 2.0 * end]) for end in ends]
    problems = clip_problems(clips, manifests, probes)
    assert not [p for p in problems if p.is_error]
    if not warned:
        assert problems == []
        return
    (grid,) = problems
    assert (grid.file, grid.index, grid.field, grid.is_error) == (
        str(tmp_path / "m.json"),
        None,
        "keyframes",
        False,
    )
    assert grid.message.startswith(
        "the tracks of all 8 tracked entries end in the first 50% of their videos (the latest: entry 0) "
        "(frame numbers read on a 50 fps grid): annotations on a coarser grid than they are read on"
    )


# --------------------------------------------------------------------------------- decode failures
class _Items(torch.utils.data.Dataset):
    """Item i = (i, a draw from torch's RNG); the indices in `broken` raise like an unreadable video."""

    def __init__(self, n, broken):
        self.n, self.broken = n, set(broken)

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if index in self.broken:
            raise VideoError(f"v{index}.mp4: cannot be opened as a video")
        return index, float(torch.rand(()))


def test_a_clip_that_fails_is_replaced_by_the_next_one_the_same_way_every_time(caplog):
    items = _Items(6, broken={2, 3})
    first = EpochSeededDataset(items, seed=5)
    replaced = first[(1, 2)]
    assert replaced[0] == 4  # 2 and 3 fail: the next index that decodes
    torch.manual_seed(item_seed(5, 1, 2))
    assert replaced[1] == float(torch.rand(()))  # drawn under the failed key's seed, not item 4's
    assert first[(1, 4)][1] != replaced[1]
    resumed = EpochSeededDataset(items, seed=5)  # a resumed run (or another worker): nothing remembered
    assert resumed[(1, 3)] == first[(1, 3)] and first[(1, 3)][0] == 4
    assert resumed[(1, 2)] == replaced
    assert [first[(0, i)] for i in range(6)] == [resumed[(0, i)] for i in range(6)]
    assert "v2.mp4: cannot be opened" in caplog.text
    assert "item 2 replaced by item 4 in epoch 1" in caplog.text
    assert sorted(first.failed) == [2, 3]


def test_more_failed_clips_than_allowed_stop_the_run():
    assert EpochSeededDataset(_Items(6, broken={1, 2}), seed=0, max_failed=2)[(0, 1)][0] == 3
    with pytest.raises(TooManyFailedClips, match=r"3 distinct clips failed to decode .*max_failed_clips=2"):
        EpochSeededDataset(_Items(6, broken={1, 2, 3}), seed=0, max_failed=2)[(0, 1)]


def test_a_worker_traceback_is_cut_to_the_error_line():
    wrapped = (
        "Caught TooManyFailedClips in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nfgclip.data.epochs.TooManyFailedClips: 11 distinct clips failed\n'
    )
    assert str(TooManyFailedClips(wrapped)) == "11 distinct clips failed"
