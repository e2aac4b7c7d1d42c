"""Head evaluation = the project's frame-level metric code on the same scores; the VadCLIP convention by hand."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fgclip.evaluation.anomaly import (
    AnnotationError,
    SnippetLayout,
    TemporalAnnotation,
    frame_level_metrics,
    read_temporal_annotations,
)
from fgclip.head.features import FeatureError, VideoFeatures, read_labels
from fgclip.head.frame_metrics import (
    evaluate_head,
    native_frame_scores,
    read_ground_truth,
    vadclip_convention_metrics,
)
from fgclip.head.model import AnomalyHead, HeadConfig
from fgclip.head.train import head_snippet_scores


@pytest.fixture(scope="module")
def head(planted):
    import torch

    torch.manual_seed(0)
    return AnomalyHead(HeadConfig(feature_dim=planted[1].dim, hidden_dim=16, max_len=8)).eval()  # chunks of 8


def test_evaluation_equals_the_projects_frame_level_metrics(planted, head, tmp_path):
    paths, features, _ = planted
    test_labels = read_labels(paths.test_list)
    annotations = read_temporal_annotations(paths.annotations)
    evaluation = evaluate_head(head, features, test_labels, annotations, out_dir=tmp_path, timelines=3)
    # the reference: score each video, repeat with SnippetLayout exactly as the zero-shot path, frame_level_metrics
    scores, counts = {}, {}
    for name in test_labels:
        video = features.videos[name]
        layout = SnippetLayout(video.num_frames, 16, 8)
        scores[name] = layout.repeat(head_snippet_scores(head, video.features))
        counts[name] = video.num_frames
    assert evaluation.report["frame_level"] == frame_level_metrics(scores, annotations, counts)
    assert all(len(evaluation.frame_scores[n]) == counts[n] for n in counts)  # every native frame
    assert (
        json.loads((tmp_path / "head_eval.json").read_text())["frame_level"]
        == evaluation.report["frame_level"]
    )
    assert len(list((tmp_path / "timelines").glob("*.png"))) == 3


def test_long_videos_are_scored_in_chunks_and_padding_never_leaks(planted, head):
    """Chunks of one video are padded into one batch; each must score as if it were alone."""
    video = next(v for v in planted[1].videos.values() if v.num_snippets > 16)
    whole = head_snippet_scores(head, video.features)
    pieces = np.concatenate(
        [head_snippet_scores(head, video.features[i : i + 8]) for i in range(0, video.num_snippets, 8)]
    )
    assert len(whole) == video.num_snippets and np.allclose(whole, pieces)


def test_vadclip_convention_known_answer():
    annotation = {"v": TemporalAnnotation("v", "Fire", ((16, 31),))}
    # 3 snippets -> 48 frames; gt[16:31] = 1 (15 frames, end exclusive; frame 31 stays 0)
    scores = {"v": np.array([0.1, 0.8, 0.3])}
    truth = np.zeros(48, dtype=np.int8)
    truth[16:31] = 1
    expected = roc_auc_score(truth, np.repeat(scores["v"], 16))
    assert vadclip_convention_metrics(scores, annotation, ["v"])["auc"] == pytest.approx(expected)
    assert expected < 1.0  # frame 31 (score 0.8, label 0) is where the conventions differ


def test_dropped_partial_snippet_frames_take_the_last_score():
    video = VideoFeatures("v", np.zeros((2, 4), np.float32), num_frames=40, fps=25.0, snippet_frames=16,
                          partial_snippet="drop")  # fmt: skip
    frames = native_frame_scores(video, np.array([0.2, 0.7]))
    assert frames.shape == (40,) and np.all(frames[:16] == 0.2) and np.all(frames[16:] == 0.7)


def test_msad_json_ground_truth(tmp_path):
    path = tmp_path / "msad.json"
    path.write_text(json.dumps({"Fire_1.mp4": {"class": "Fire", "segments": [[3, 9], [20, 25], [40, 41]]},
                                "Normal_2": {"class": "Normal", "segments": []}}))  # fmt: skip
    table = read_ground_truth(path)
    assert table["Fire_1"].segments == ((3, 9), (20, 25), (40, 41)) and not table["Normal_2"].is_abnormal
    path.write_text(json.dumps({"Fire_1": {"class": "Fire", "segments": []}}))
    with pytest.raises(AnnotationError, match="Fire_1"):
        read_ground_truth(path)


def test_list_and_annotation_must_agree(planted, head, tmp_path):
    paths, features, _ = planted
    first = paths.test_list.read_text().splitlines()[1]  # an abnormal video, listed here as normal
    wrong = tmp_path / "test.txt"
    wrong.write_text(f"Normal/{first.split('/')[1]}\n")
    with pytest.raises(FeatureError, match="temporal annotation says"):
        evaluate_head(head, features, read_labels(wrong), read_temporal_annotations(paths.annotations))
