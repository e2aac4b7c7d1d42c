"""The head on the field's layout: a fabricated VadCLIP tree (Class/Name__k.npy, list CSVs path,label with a
foreign path prefix) through the real `fgclip head train` / `head eval` / `head compare`, and the length rules."""

import json

import numpy as np
import pytest

from fgclip.cli import main
from fgclip.head.features import FeatureError, read_features
from fgclip.head.synthetic import write_planted_vadclip_tree

RECIPE = ["--steps", "60", "--eval-every", "20", "--batch-size", "8", "--hidden-dim", "16", "--window", "2"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_planted_vadclip_tree(tmp_path_factory.mktemp("vadclip"), seed=0, num_train=30, num_test=16,
                                      crops=10, test_crop=5, snippets=(12, 24), strength=1.2)  # fmt: skip


def test_a_list_csv_reads_as_videos_crops_and_labels(tree):
    train = read_features(tree.train_list, crop=5, feature_root=tree.root)
    assert len(train.videos) == 30 and all(len(v) == 10 for v in train.views.values())
    name = "Planted_train0001_x264"
    assert train.labels[name].abnormal and train.labels[name].label_class == "Planted"
    assert not train.labels["Normal_train0000_x264"].abnormal
    video = train.videos[name]
    assert video.crop == 5 and video.num_frames == 16 * len(video.features)  # N = 16 x S: VadCLIP's length
    assert np.array_equal(video.features, np.load(tree.root / "Planted" / f"{name}__5.npy"))
    assert len(train.training_views([name], "test", [0, 5])) == 2
    with pytest.raises(FeatureError, match=r"holds crops \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]; choose .* --crop"):
        read_features(tree.train_list, feature_root=tree.root)
    with pytest.raises(
        FeatureError, match=r"ucf_CLIP_rgb.csv:2: feature file /home/someone/.* \(pass --feature-root"
    ):
        read_features(tree.train_list, crop=5)


def test_head_finds_the_planted_event_in_a_vadclip_tree(tree, tmp_path, capsys):
    head = tmp_path / "head"
    root = ["--feature-root", str(tree.root)]
    assert (
        main(["head", "train", str(tree.train_list), *root, "--crop", "5", "--out", str(head), *RECIPE]) == 0
    )
    assert (
        "training on 240 views of 24 videos; validating on crop 5" in capsys.readouterr().out
    )  # 30 - 6 held out
    argv = ["head", "eval", str(head), str(tree.test_list), *root, "--temporal-annotations", str(tree.annotations),
            "--out", str(tmp_path / "eval"), "--timelines", "1"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "eval" / "head_eval.json").read_text())
    overall = report["frame_level"]["overall"]
    # every video is 16 x S frames; chance AUC is 0.5, the planted direction makes it easy
    assert overall["auc"] > 0.9, overall
    assert report["vadclip_convention"]["overall"]["auc"] > 0.9
    assert report["vadclip_convention"]["overall"]["frames"] == overall["frames"]  # both on 16 x S frames
    argv = ["head", "compare", str(tree.train_list), str(tree.train_list), *root, "--crop", "5",
            "--test-features", str(tree.test_list), str(tree.test_list), "--train-crops", "0,5",
            "--temporal-annotations", str(tree.annotations), "--seeds", "0", "1", "2",
            "--out", str(tmp_path / "cmp"), *RECIPE]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["summary"]["A"]["auc"]["mean"] > 0.85 and min(r["auc"] for r in result["runs"]["A"]) > 0.75
    assert result["runs"]["A"] == result["runs"]["B"]  # the same features and seeds: the same heads
