"""The data side of `fgclip train`: manifests read with their problems reported, leakage refused, samplers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from fgclip.builders import read_clips, train_sampler
from fgclip.checks import check_leakage
from fgclip.config import ConfigError, load_config
from fgclip.data.errors import ManifestError
from fgclip.data.records import ABNORMAL, NORMAL, Clip
from fgclip.data.sampler import BalancedBatchSampler, GroupedShuffleSampler

GOOD = {
    "video": "UCF/Abuse/Abuse028_x264.mp4",
    "global_caption": "a man hits a woman",
    "region_captions": ["a man hits"],
    "box_infos": [[{"frame": 50, "bbox": [0.1, 0.2, 0.5, 0.9]}]],
    "timestamps": None,
}


def _config(*overrides):
    return load_config(None, list(overrides))


def _clip(i: int, label: int, video: str = "v.mp4", group=None) -> Clip:
    return Clip(f"m.json:{i}", None, video, "c", (), label, group=group)


def test_bad_entries_stop_training_unless_skipped_and_then_are_listed(tmp_path, capsys):
    path = tmp_path / "m.json"
    path.write_text(json.dumps([GOOD, dict(GOOD, region_captions=["a", "b"])]))
    config = _config("--data.train_manifests", json.dumps([str(path)]))
    with pytest.raises(ManifestError, match="entry 1") as error:
        read_clips(config.data, config.data.train_manifests)
    assert "data.invalid_entries: skip" in str(error.value)
    config = _config("--data.train_manifests", json.dumps([str(path)]), "--data.invalid_entries", "skip")
    clips = read_clips(config.data, config.data.train_manifests)
    out = capsys.readouterr().err  # diagnostics go to stderr
    assert len(clips) == 1
    assert (
        "1 clips from 2 entries; 0 warning(s), 1 error(s): bad entries LEFT OUT" in out and "entry 1" in out
    )


def test_per_manifest_annotation_grid_from_the_config(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps([GOOD]))
    manifests = json.dumps([str(path)])
    config = _config(
        "--data.train_manifests",
        manifests,
        "--data.manifest_annotation_fps",
        json.dumps({str(path): 50}),
    )
    (clip,) = read_clips(config.data, config.data.train_manifests)
    assert clip.regions[0].track.keyframes[0].time_s == 1.0
    with pytest.raises(ConfigError, match="not in data.train_manifests"):
        _config("--data.manifest_annotation_fps", json.dumps({"other.json": 30}))


def test_training_refuses_test_videos_unless_told_to_warn(tmp_path, capsys):
    test_list = tmp_path / "test.txt"
    test_list.write_text("Abuse/Abuse028_x264.mp4\n")
    clips = [_clip(0, ABNORMAL, "UCF/Abuse/Abuse028_x264.mp4"), _clip(1, NORMAL, "UCF/n.mp4")]
    config = _config("--data.test_list", str(test_list))
    with pytest.raises(ConfigError, match="1 of the 1 test videos") as error:
        check_leakage(config.data, clips)
    assert "m.json:0" in str(error.value) and "data.test_leakage: warn" in str(error.value)
    check_leakage(_config("--data.test_list", str(test_list), "--data.test_leakage", "warn").data, clips)
    assert "WARNING test-set leakage: 1 of the 1 test videos" in capsys.readouterr().err
    check_leakage(config.data, clips[1:])  # no leakage: trains


def test_sampler_choice_follows_the_config():
    dataset = SimpleNamespace(clips=[_clip(i, i % 2, group=f"g{i // 2}") for i in range(8)])
    dataset.labels = lambda: [c.label for c in dataset.clips]
    plain = train_sampler(_config(), dataset, world_size=1)
    assert isinstance(plain, GroupedShuffleSampler) and len(plain.groups) == 8  # every clip its own group
    grouped = train_sampler(_config("--data.batch_by_group", "true"), dataset, world_size=1)
    assert isinstance(grouped, GroupedShuffleSampler) and len(grouped.groups) == 4
    balanced = train_sampler(
        _config("--data.balance", "true", "--train.per_device_batch_size", "2"),
        dataset,
        world_size=2,
    )
    assert (
        isinstance(balanced, BalancedBatchSampler) and balanced.world_size == 2 and balanced.batch_size == 2
    )
    assert len(balanced) == 8


@pytest.mark.parametrize(
    "key, value",
    [
        ("invalid_entries", "drop"),
        ("test_leakage", "ignore"),
        ("open_track_end", "never"),
        ("annotation_fps", "0"),
    ],
)
def test_data_choices_are_validated(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"data.{key}"):
        _config(f"--data.{key}", value)
