"""Reading export folders and label files; mismatches fail with the file, line and video named."""

import json

import numpy as np
import pytest

from fgclip.head.features import FeatureError, read_features, read_labels


def test_ucf_list_labels(tmp_path):
    path = tmp_path / "Anomaly_Train.txt"
    path.write_text("Abuse/Abuse001_x264.mp4\nTraining_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4\n\n"
                    "Normal_Videos_event/Normal_Videos_003_x264.mp4\nRoadAccidents/RoadAccidents010_x264.mp4\n")  # fmt: skip
    labels = read_labels(path)
    assert [(n, lab.abnormal, lab.label_class) for n, lab in labels.items()] == [
        ("Abuse001_x264", True, "Abuse"), ("Normal_Videos001_x264", False, "Normal"),
        ("Normal_Videos_003_x264", False, "Normal"), ("RoadAccidents010_x264", True, "RoadAccidents"),
    ]  # fmt: skip
    path.write_text("Abuse001_x264.mp4\n")
    with pytest.raises(FeatureError, match=r"Anomaly_Train.txt:1: expected 'Class/Name.mp4'"):
        read_labels(path)


def test_csv_and_json_labels(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("video,label,class\nvideos/a.mp4,1,Fire\nb,normal,\nc,abnormal,\n")
    labels = read_labels(csv_path)
    assert (labels["a"].abnormal, labels["a"].label_class) == (True, "Fire")
    assert (labels["b"].abnormal, labels["c"].label_class) == (False, "Abnormal")
    json_path = tmp_path / "labels.json"
    json_path.write_text(json.dumps([{"video": "a", "label": 0}, {"video": "b", "label": "maybe"}]))
    with pytest.raises(FeatureError, match=r"labels.json: entry 1: 'label' must be"):
        read_labels(json_path)
    csv_path.write_text("video,label\na,1\na,0\n")
    with pytest.raises(FeatureError, match=r"labels.csv:3: video 'a' is listed twice"):
        read_labels(csv_path)


def test_features_that_do_not_match_their_frame_count_are_refused(planted, tmp_path):
    source = planted[0].features
    description = json.loads((source / "features.json").read_text())
    name = sorted(description["videos"])[0]
    for stem in description["videos"]:
        (tmp_path / f"{stem}.npy").write_bytes((source / f"{stem}.npy").read_bytes())
    description["videos"][name]["num_frames"] += 16  # one snippet more than the .npy holds
    (tmp_path / "features.json").write_text(json.dumps(description))
    with pytest.raises(FeatureError, match=rf"{name}.npy: shape .* make \[\d+, D\]"):
        read_features(tmp_path)
    description["videos"][name] = {"video": "x.mp4", "skipped": "exists"}
    (tmp_path / "features.json").write_text(json.dumps(description))
    with pytest.raises(FeatureError, match=rf"video '{name}' has no num_frames"):
        read_features(tmp_path)


def test_selecting_missing_videos_names_them(planted):
    features = planted[1]
    with pytest.raises(FeatureError, match=r"no features for 1 video\(s\) of the test list, e.g. \['nope'\]"):
        features.select([next(iter(features.videos)), "nope"], "the test list")
    assert np.isfinite(features.videos[next(iter(features.videos))].features).all()
