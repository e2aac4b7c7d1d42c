"""Temporal annotations, frame ground truth, snippet layout and frame-level AUC/AP on hand-made answers."""

import os
from pathlib import Path

import numpy as np
import pytest

from fgclip.evaluation.anomaly import (
    AnnotationError,
    SnippetLayout,
    TemporalAnnotation,
    frame_ground_truth,
    frame_level_metrics,
    read_temporal_annotations,
)

# shared/ lies beside the checkout (data/README.md); FGCLIP_SHARED points elsewhere (e.g. from a worktree).
SHARED = Path(os.environ.get("FGCLIP_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
UCF_ANNOTATIONS = SHARED / "data/real/ucf_crime/Temporal_Anomaly_Annotation_for_Testing_Videos.txt"


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "annotation.txt"
    path.write_text(text)
    return path


def test_reads_ucf_lines_with_one_or_two_segments(tmp_path):
    path = _write(
        tmp_path,
        "Arson011_x264  Arson  150  420  680  1267  \n\nNormal_Videos_003_x264  Normal  -1  -1  -1  -1  \n"
        "Abuse028_x264.mp4  Abuse  165  240  -1  -1\n",
    )
    table = read_temporal_annotations(path)
    assert table["Arson011_x264"].segments == ((150, 420), (680, 1267))
    assert table["Normal_Videos_003_x264"] == TemporalAnnotation("Normal_Videos_003_x264", "Normal", ())
    assert table["Abuse028_x264"].segments == ((165, 240),)  # the extension is not part of the name
    assert not table["Normal_Videos_003_x264"].is_abnormal and table["Arson011_x264"].is_abnormal


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("A  Abuse  1  2  -1", "expected 'Name Class s1 e1 s2 e2'"),
        ("A  Abuse  1  x  -1  -1", "must be integers"),
        ("A  Abuse  5  -1  -1  -1", "one bound -1"),
        ("A  Abuse  9  3  -1  -1", "end 3 before start 9"),
        ("A  Normal  1  3  -1  -1", "labelled 'Normal' but has segments"),
        ("A  Abuse  -1  -1  -1  -1", "has no segment"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = _write(tmp_path, "B  Normal  -1  -1  -1  -1\n" + line + "\n")
    with pytest.raises(AnnotationError, match=message) as error:
        read_temporal_annotations(path)
    assert f"{path}:2" in str(error.value)


def test_duplicate_video_is_an_error(tmp_path):
    path = _write(tmp_path, "A  Abuse  1  2  -1  -1\nA  Abuse  3  4  -1  -1\n")
    with pytest.raises(AnnotationError, match="annotated twice"):
        read_temporal_annotations(path)


@pytest.mark.skipif(
    not UCF_ANNOTATIONS.is_file(), reason="shared/data (real UCF-Crime annotation file) not present"
)
def test_reads_the_official_ucf_crime_file():
    table = read_temporal_annotations(UCF_ANNOTATIONS)
    assert len(table) == 290
    assert sum(not a.is_abnormal for a in table.values()) == 150
    assert len({a.label for a in table.values() if a.is_abnormal}) == 13
    assert table["Shoplifting007_x264"].segments == ((550, 760), (4630, 4920))


def test_ground_truth_is_zero_based_and_end_inclusive():
    annotation = TemporalAnnotation("v", "Abuse", ((2, 4), (8, 20)))
    truth = frame_ground_truth(10, annotation)
    assert truth.tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 1, 1]  # frames 2..4, and 8..9 (cut at the last frame)


def test_segment_starting_after_the_video_is_an_error():
    with pytest.raises(AnnotationError, match="starts after the video's last frame"):
        frame_ground_truth(10, TemporalAnnotation("v", "Abuse", ((10, 12),)))


def test_snippet_layout_samples_bin_centres_and_a_short_last_snippet():
    layout = SnippetLayout(num_frames=40, snippet_frames=16, frames_per_snippet=8)
    samples = layout.sample_frames()
    assert layout.num_snippets == 3 and layout.num_full_snippets == 2
    assert samples[0].tolist() == list(range(1, 16, 2))
    assert samples[1].tolist() == list(range(17, 32, 2))
    assert samples[2].tolist() == list(range(32, 40))  # 8 frames left: one sample each
    assert SnippetLayout(33, 16, 8).sample_frames()[2].tolist() == [32] * 8  # one frame left
    assert SnippetLayout(16, 16, 4).sample_frames().tolist() == [[2, 6, 10, 14]]


def test_repeat_covers_every_frame_once():
    layout = SnippetLayout(num_frames=35, snippet_frames=16, frames_per_snippet=4)
    frames = layout.repeat(np.array([0.1, 0.5, 0.9]))
    assert len(frames) == 35
    assert (
        frames[:16].tolist() == [0.1] * 16
        and frames[16:32].tolist() == [0.5] * 16
        and frames[32:].tolist() == [0.9] * 3
    )
    with pytest.raises(ValueError, match="expected 3 snippet values"):
        layout.repeat(np.array([0.1, 0.5]))


def test_layout_rejects_more_samples_than_frames():
    with pytest.raises(ValueError, match="frames_per_snippet"):
        SnippetLayout(100, 16, 17)


def _toy():
    annotations = {
        "a": TemporalAnnotation("a", "Abuse", ((2, 3),)),
        "b": TemporalAnnotation("b", "Normal", ()),
        "c": TemporalAnnotation("c", "Arson", ((0, 0),)),
    }
    scores = {"a": np.array([0.1, 0.4, 0.35, 0.8]), "b": np.array([0.2, 0.3]), "c": np.array([0.9, 0.05])}
    return scores, annotations, {"a": 4, "b": 2, "c": 2}


def test_frame_level_metrics_known_answer():
    scores, annotations, counts = _toy()
    metrics = frame_level_metrics(scores, annotations, counts)
    # all frames: positives {0.35, 0.8, 0.9}, negatives {0.1, 0.4, 0.2, 0.3, 0.05}
    # pairs won: 0.35 -> 4 of 5 (loses to 0.4), 0.8 -> 5, 0.9 -> 5  => 14 / 15
    assert metrics["overall"]["auc"] == pytest.approx(14 / 15)
    # ranking 0.9+ 0.8+ 0.4- 0.35+ ...: AP = (1/1 + 2/2 + 3/4) / 3
    assert metrics["overall"]["ap"] == pytest.approx((1 + 1 + 0.75) / 3)
    assert metrics["overall"]["frames"] == 8 and metrics["overall"]["abnormal_frames"] == 3
    # abnormal videos a and c only: negatives {0.1, 0.4, 0.05}: 0.35 wins 2, 0.8 and 0.9 win 3 => 8 / 9
    assert metrics["abnormal_videos"]["auc"] == pytest.approx(8 / 9)
    assert metrics["per_class"]["Abuse"]["auc"] == pytest.approx(3 / 4)  # 0.35 > 0.1 only, 0.8 > both
    assert metrics["per_class"]["Arson"]["auc"] == pytest.approx(1.0)
    assert metrics["num_videos"] == {"total": 3, "abnormal": 2}


def test_one_class_subset_has_no_auc():
    scores, annotations, counts = _toy()
    metrics = frame_level_metrics({"b": scores["b"]}, annotations, {"b": 2})
    assert metrics["overall"]["auc"] is None and "one class" in metrics["overall"]["note"]


def test_scores_shorter_than_the_video_are_an_error():
    scores, annotations, counts = _toy()
    scores["a"] = scores["a"][:3]  # an off-by-one snippet
    with pytest.raises(AnnotationError, match="a: 3 frame scores but 4 ground-truth frames"):
        frame_level_metrics(scores, annotations, counts)


def test_scored_video_without_annotation_is_an_error():
    scores, annotations, counts = _toy()
    del annotations["b"]
    with pytest.raises(AnnotationError, match="no temporal annotation"):
        frame_level_metrics(scores, annotations, counts)
