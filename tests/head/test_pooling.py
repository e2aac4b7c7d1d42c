"""Uniform pooling of long videos to the training length, and the map back to snippets."""

import numpy as np

from fgclip.head.train import pool_snippets, unpool_scores


def test_pooling_uses_vadclip_bins_and_means():
    features = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)  # (10, 3)
    pooled, edges = pool_snippets(features, 4)
    assert edges.tolist() == [0, 2, 5, 7, 10]  # int(linspace(0, 10, 5))
    assert np.allclose(pooled[:, 0], [0.5, 3.0, 5.5, 8.0])  # bin means
    assert pooled.shape == (4, 3) and pooled.dtype == np.float32


def test_unpool_maps_each_snippet_to_its_bin():
    _, edges = pool_snippets(np.zeros((10, 2), np.float32), 4)
    assert unpool_scores(np.array([0.1, 0.2, 0.3, 0.4]), edges).tolist() == [
        0.1, 0.1, 0.2, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.4,
    ]  # fmt: skip


def test_pool_then_unpool_round_trips_bin_constant_values_and_keeps_the_true_length():
    rng = np.random.default_rng(0)
    for length in (7, 256, 257, 1000, 4097):
        bins = min(length, 256)
        values = rng.random(bins)
        _, edges = pool_snippets(np.zeros((length, 1), np.float32), 256)
        snippet_values = unpool_scores(values, edges)
        assert len(snippet_values) == length and len(edges) == bins + 1
        pooled, _ = pool_snippets(snippet_values[:, None].astype(np.float64), 256)
        assert np.allclose(pooled[:, 0], values)  # every bin holds one value, so pooling recovers it


def test_short_videos_are_not_pooled():
    features = np.random.default_rng(1).random((5, 4)).astype(np.float32)
    pooled, edges = pool_snippets(features, 8)
    assert np.array_equal(pooled, features) and edges.tolist() == [0, 1, 2, 3, 4, 5]
