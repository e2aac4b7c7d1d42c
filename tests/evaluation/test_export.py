"""Feature export: the VadCLIP layout with 10 crops, atomic writes, resuming an interrupted export (the same
files and the same head as an uninterrupted one), shards merged to the single-process export."""

import csv
import json
import logging

import numpy as np
import pytest
import torch
from tiny_models import tiny_fgclip

import fgclip.evaluation.export as export_module
from fgclip.data.crops import CropSpec
from fgclip.data.frames import FrameSource
from fgclip.data.video import write_video
from fgclip.evaluation.export import ExportError, Shard, export_features, merge_feature_shards
from fgclip.evaluation.snippet_options import SnippetOptions
from fgclip.head.features import read_features
from fgclip.head.model import HeadConfig
from fgclip.head.train import TrainOptions, split_training_videos, train_head

SIZE = 32  # the tiny model's input
VIDEOS = {  # folder/name: frames (a short last snippet in most)
    "Abuse/Abuse001_x264": 40, "Abuse/Abuse002_x264": 33, "Arson/Arson001_x264": 21,
    "Training_Normal_Videos_Anomaly/Normal_Videos001_x264": 48,
    "Training_Normal_Videos_Anomaly/Normal_Videos002_x264": 17, "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264": 30,
}  # fmt: skip


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf")
    paths = []
    for index, (name, frames) in enumerate(VIDEOS.items()):
        rng = np.random.default_rng(index)
        path = root / f"{name}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, rng.integers(0, 255, (frames, 40, 56, 3), dtype=np.uint8), 25.0)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def model():
    return tiny_fgclip(seed=0).eval()


def _export(model, videos, out, **options):
    crops = options.pop("crops", CropSpec(1, SIZE, SIZE))
    snippets = SnippetOptions(frames_per_snippet=4, batch_frames=16)
    return export_features(model, videos, out, FrameSource(crops.resize_side), snippets, progress=False,
                           meta={"checkpoint": "tiny"}, crops=crops, **options)  # fmt: skip


def test_vadclip_layout_with_ten_crops(model, videos, tmp_path):
    crops = CropSpec.field(10, SIZE)  # frames read at 37 px, ten 32 px crops
    _export(model, videos, tmp_path, crops=crops, layout="vadclip", test_crop=5)
    description = json.loads((tmp_path / "features.json").read_text())
    assert description["crops"]["count"] == 10 and description["crops"]["resize_side"] == 37
    assert (
        description["snippet"]["snippet_frames"] == 16 and description["snippet"]["frames_per_snippet"] == 4
    )
    assert "ceil(N / 16)" in description["snippet"]["short_last_snippet"]
    for video, frames in zip(videos, VIDEOS.values(), strict=True):
        views = [np.load(tmp_path / video.parent.name / f"{video.stem}__{k}.npy") for k in range(10)]
        assert all(v.shape == (-(-frames // 16), 16) and v.dtype == np.float32 for v in views)
        assert not np.allclose(views[0], views[3])  # top-left and bottom-right see different pixels
        entry = description["videos"][video.stem]
        assert entry["num_frames"] == frames and entry["last_snippet_frames"] == frames - 16 * (
            -(-frames // 16) - 1
        )
    with open(tmp_path / "features_rgb.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 * len(videos) and set(rows[0]) == {"path", "label"}
    assert rows[0]["path"] == str((tmp_path / "Abuse" / "Abuse001_x264__0.npy").resolve())
    assert rows[0]["label"] == "Abuse" and rows[-1]["label"] == "Normal"
    with open(tmp_path / "features_rgbtest.csv", newline="") as handle:
        test_rows = list(csv.DictReader(handle))
    assert [r["path"].rsplit("__", 1)[1] for r in test_rows] == ["5.npy"] * len(videos)
    assert not list(tmp_path.rglob("*.partial"))


def test_resumed_export_equals_an_uninterrupted_one(model, videos, tmp_path, monkeypatch, caplog):
    _export(model, videos, tmp_path / "whole", layout="vadclip", crops=CropSpec.field(5, SIZE))
    real = export_module.iter_video_snippets

    def killed_after_three(*args, **kwargs):
        for done, snippets in enumerate(real(*args, **kwargs)):
            if done == 3:
                raise KeyboardInterrupt  # the job is killed while embedding the fourth video
            yield snippets

    monkeypatch.setattr(export_module, "iter_video_snippets", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        _export(model, videos, tmp_path / "resumed", layout="vadclip", crops=CropSpec.field(5, SIZE))
    monkeypatch.setattr(export_module, "iter_video_snippets", real)
    resumed = tmp_path / "resumed"
    assert not (resumed / "features.json").exists()
    torn = resumed / "Abuse" / "Abuse002_x264__2.npy"
    torn.write_bytes(torn.read_bytes()[:-40])  # a file cut short (a copy or disk gone wrong)
    wrong = resumed / "Arson" / "Arson001_x264__0.npy"
    np.save(wrong, np.zeros((5, 16), np.float32))  # 5 snippets where the video has 2
    with caplog.at_level(logging.WARNING):
        _export(model, videos, resumed, layout="vadclip", crops=CropSpec.field(5, SIZE), skip_existing=True)
    assert (
        f"{torn}: unreadable" in caplog.text
        and f"{wrong}: 5 snippets, the video's frame count gives 2" in caplog.text
    )
    assert (resumed / "features.json").read_text() == (
        tmp_path / "whole" / "features.json"
    ).read_text().replace(str((tmp_path / "whole").resolve()), str(resumed.resolve()))
    assert (resumed / "features_rgb.csv").read_text() == (
        tmp_path / "whole" / "features_rgb.csv"
    ).read_text().replace(str((tmp_path / "whole").resolve()), str(resumed.resolve()))
    for path in (tmp_path / "whole").rglob("*.npy"):
        assert np.array_equal(np.load(path), np.load(resumed / path.relative_to(tmp_path / "whole"))), path
    folder, listed = read_features(resumed), read_features(resumed / "features_rgb.csv", crop=0)
    assert folder.labels == listed.labels and folder.crop == 0  # the export's test crop
    assert all(len(views) == 5 for views in folder.views.values())
    assert [folder.videos[v.stem].num_frames for v in videos] == list(VIDEOS.values())  # native, not 16 x S
    heads = [_head_weights(tmp_path / "whole"), _head_weights(resumed)]
    assert heads[0].keys() == heads[1].keys()
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])


def _head_weights(folder):
    """The head trained on an export's list CSV (every crop; validation on crop 0), as `fgclip head train` does."""
    features = read_features(folder / "features_rgb.csv", crop=0)
    split = split_training_videos(features.labels, val_fraction=0.2, seed=0)
    trained = train_head(
        features.training_views(split.train, "train"), features.select(split.validation, "validation"),
        features.labels, split, config=HeadConfig(feature_dim=features.dim, max_len=8, hidden_dim=8, window=1),
        options=TrainOptions(steps=6, batch_size=4, eval_every=3),
    )  # fmt: skip
    return trained.head.state_dict()


def test_resuming_with_other_settings_is_refused(model, videos, tmp_path):
    _export(model, videos[:2], tmp_path)
    with pytest.raises(
        ExportError, match=r"export_settings.json: this folder was exported with other settings \(crops"
    ):
        _export(model, videos[:2], tmp_path, crops=CropSpec.field(5, SIZE), skip_existing=True)


def test_shards_merge_to_the_single_process_export(model, videos, tmp_path):
    _export(model, videos, tmp_path / "single", layout="vadclip")
    for index in (1, 0, 2):  # any order: the merge restores the input order
        _export(model, videos, tmp_path / "sharded", layout="vadclip", shard=Shard(index, 3))
    with pytest.raises(ExportError, match="have not finished"):
        (tmp_path / "sharded" / "features.shard-2-of-3.json").rename(tmp_path / "moved.json")
        merge_feature_shards(tmp_path / "sharded")
    (tmp_path / "moved.json").rename(tmp_path / "sharded" / "features.shard-2-of-3.json")
    merge_feature_shards(tmp_path / "sharded")
    single, sharded = (tmp_path / "single").resolve(), (tmp_path / "sharded").resolve()
    for name in ("features.json", "features_rgb.csv", "features_rgbtest.csv"):
        assert (sharded / name).read_text() == (single / name).read_text().replace(str(single), str(sharded))
    for path in single.rglob("*.npy"):
        assert np.array_equal(np.load(path), np.load(sharded / path.relative_to(single)))
