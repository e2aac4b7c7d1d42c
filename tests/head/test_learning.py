"""The head learns a planted snippet pattern from video labels only; the same seed gives the same head."""

import pytest
import torch

from fgclip.head.features import read_labels
from fgclip.head.frame_metrics import evaluate_head, read_ground_truth
from fgclip.head.model import HeadConfig
from fgclip.head.train import TrainOptions, split_training_videos, train_head

RECIPE = {"hidden_dim": 32, "window": 2}


def _train(features, labels, seed: int, steps: int):
    split = split_training_videos(labels, val_fraction=0.2, seed=seed)
    return train_head(
        features.select(split.train, "train"), features.select(split.validation, "validation"), labels, split,
        config=HeadConfig(feature_dim=features.dim, **RECIPE),
        options=TrainOptions(steps=steps, batch_size=8, lr=2e-3, eval_every=20, seed=seed),
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(planted):
    _, features, labels = planted
    return _train(features, labels, seed=0, steps=100)


def test_head_localises_a_planted_event_from_video_labels_only(planted, trained):
    paths, features, _ = planted
    test_labels = read_labels(paths.test_list)
    assert not set(test_labels) & set(
        trained.report["videos"]["train"] + trained.report["videos"]["validation"]
    )
    report = evaluate_head(trained.head, features, test_labels, read_ground_truth(paths.annotations)).report
    auc = report["frame_level"]["overall"]["auc"]
    abnormal_only = report["frame_level"]["abnormal_videos"]["auc"]
    assert auc > 0.9, report["frame_level"]["overall"]
    assert abnormal_only > 0.9, report["frame_level"]["abnormal_videos"]  # localised, not just "which video"
    losses = [row["loss"] for row in trained.history]
    assert sum(losses[-10:]) < sum(losses[:10]) / 2


def test_untrained_head_does_not_localise(planted):
    """The same evaluation of a head after one step: the AUC above comes from training."""
    paths, features, labels = planted
    barely = _train(features, labels, seed=0, steps=1)
    report = evaluate_head(
        barely.head, features, read_labels(paths.test_list), read_ground_truth(paths.annotations)
    )
    assert report.report["frame_level"]["overall"]["auc"] < 0.8


def test_same_seed_same_head_other_seed_other_head(planted):
    _, features, labels = planted
    first, again, other = (_train(features, labels, seed=s, steps=5) for s in (3, 3, 4))
    state, state_again, state_other = (t.head.state_dict() for t in (first, again, other))
    assert all(torch.equal(state[k], state_again[k]) for k in state)
    assert first.report["videos"] == again.report["videos"] and first.history == again.history
    assert not all(torch.equal(state[k], state_other[k]) for k in state)
    assert first.report["videos"]["validation"] != other.report["videos"]["validation"]


def test_mil_align_branch_trains_against_class_prompts(planted):
    import numpy as np

    from fgclip.head.train import ClassPrompts

    _, features, labels = planted
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(2, features.dim)).astype(np.float32)
    prompts = ClassPrompts(
        ("Normal", "Planted"), embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    )
    split = split_training_videos(labels, val_fraction=0.2, seed=0)
    trained = train_head(
        features.select(split.train, "train"), features.select(split.validation, "validation"), labels, split,
        config=HeadConfig(feature_dim=features.dim, num_classes=2, **RECIPE),
        options=TrainOptions(steps=30, batch_size=8, lr=2e-3, eval_every=10), class_prompts=prompts,
    )  # fmt: skip
    align = [row["loss/align"] for row in trained.history]
    assert all(row["loss"] == pytest.approx(row["loss/mil"] + row["loss/align"]) for row in trained.history)
    assert sum(align[-5:]) < sum(align[:5])  # the class branch learns Normal vs Planted too
    assert trained.report["class_prompts"] == ["Normal", "Planted"]
    with pytest.raises(ValueError, match="do not match the head"):
        train_head(features.select(split.train, "train"), features.select(split.validation, "validation"), labels,
                   split, config=HeadConfig(feature_dim=features.dim, **RECIPE), class_prompts=prompts)  # fmt: skip
