"""Streaming snippet frames and embeddings: the right frames, any batch size, scores as long as the video."""

import numpy as np
import pytest
import torch

from fgclip.data.dataset import to_pixel_values
from fgclip.data.frame_cache import FrameCache
from fgclip.data.frames import FrameSource
from fgclip.data.video import decode_frames, video_frame_times, write_video
from fgclip.evaluation.anomaly import (
    SnippetLayout,
    TemporalAnnotation,
    frame_ground_truth,
    frame_level_metrics,
)
from fgclip.evaluation.snippet_options import SnippetOptions
from fgclip.evaluation.snippets import embed_video_snippets, score_snippets
from fgclip.evaluation.zeroshot import PromptBank
from fgclip.model.configuration import tiny_config
from fgclip.model.modeling import FGCLIPModel

SIZE = 32


def _video(path, num_frames: int):
    """Frame i is a flat grey of level 4 i (so a decoded frame tells its index), GOP 8 (seeks happen)."""
    frames = [np.full((SIZE, SIZE, 3), 4 * i, np.uint8) for i in range(num_frames)]
    return write_video(path, frames, fps=25.0, gop_size=8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {n: _video(root / f"v{n}.mp4", n) for n in (5, 16, 17, 40, 50)}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = tiny_config(vocab_size=16, image_size=SIZE, patch_size=8, vision_width=32, text_width=32,
                         vision_layers=1, text_layers=1, heads=2, projection_dim=16)  # fmt: skip
    return FGCLIPModel(config).eval()


def _snippets(source: FrameSource, video, layout: SnippetLayout, times):
    samples, full = layout.sample_frames(), layout.num_full_snippets
    return source.snippets(video, samples, full, layout.snippet_frames, times, SnippetOptions().batch_frames)


@pytest.mark.parametrize(
    ("num_frames", "frames_per_snippet"), [(5, 8), (17, 8), (50, 8), (50, 5), (40, 16), (17, 1)]
)
def test_streamed_snippets_are_the_sampled_frames(videos, num_frames, frames_per_snippet):
    video = videos[num_frames]
    times = video_frame_times(video)
    layout = SnippetLayout(len(times), 16, frames_per_snippet)
    streamed = list(_snippets(FrameSource(SIZE), video, layout, times))
    expected = layout.sample_frames()  # (S, F)
    assert len(streamed) == layout.num_snippets
    for snippet, indices in zip(streamed, expected, strict=True):
        reference = decode_frames(video, times[indices], size=(SIZE, SIZE))
        assert np.array_equal(snippet, reference)
        assert np.allclose(snippet.mean(axis=(1, 2, 3)), 4 * indices, atol=3)  # really frames `indices`


def test_embeddings_match_a_whole_video_reference_for_any_batch_size(videos, model):
    video = videos[50]
    times = video_frame_times(video)
    layout = SnippetLayout(len(times), 16, 4)
    frames = decode_frames(video, times[layout.sample_frames().reshape(-1)], size=(SIZE, SIZE))
    with torch.no_grad():
        frame_embeds = model.frame_embeddings(to_pixel_values(frames)).view(layout.num_snippets, 4, -1)
        reference = model.clip_embeddings(frame_embeds, torch.ones(layout.num_snippets, 4, dtype=torch.bool))
    for batch_frames in (1, 8, 1000):
        snippets = embed_video_snippets(
            model, video, FrameSource(SIZE), SnippetOptions(frames_per_snippet=4, batch_frames=batch_frames)
        )
        assert snippets.embeds.shape == (4, 16)
        assert np.allclose(snippets.embeds, reference.numpy(), atol=1e-5)
    assert snippets.fps == pytest.approx(25.0)


def test_scores_and_ground_truth_have_equal_length_for_every_video(videos, model):
    """The classic off-by-one-snippet bug: scores must cover every native frame, no more, no fewer."""
    bank = PromptBank(("Normal", "A"), torch.nn.functional.normalize(torch.randn(2, 16), dim=-1),
                      torch.tensor([0, 1]), logit_scale=10.0)  # fmt: skip
    scores, counts, annotations = {}, {}, {}
    for num_frames, video in videos.items():
        result = score_snippets(embed_video_snippets(model, video, FrameSource(SIZE)), bank)
        name = video.stem
        annotation = TemporalAnnotation(name, "A", ((num_frames // 2, num_frames - 1),))
        truth = frame_ground_truth(len(video_frame_times(video)), annotation)
        assert len(result.frame_scores) == len(truth) == num_frames
        assert len(result.snippet_scores) == -(-num_frames // 16)
        scores[name], counts[name], annotations[name] = result.frame_scores, num_frames, annotation
    metrics = frame_level_metrics(scores, annotations, counts)
    assert metrics["overall"]["frames"] == sum(videos)


def test_frame_cache_is_written_then_read(videos, tmp_path):
    video = videos[40]
    times = video_frame_times(video)
    layout = SnippetLayout(len(times), 16, 8)
    decoded = list(_snippets(FrameSource(SIZE), video, layout, times))
    source = FrameSource(SIZE, FrameCache(tmp_path / "cache", size=(SIZE, SIZE)), write_cache=True)
    cached = list(_snippets(source, video, layout, times))
    assert source.used == {"decoded": [], "frame_cache": [str(video)]}
    assert len(cached) == len(decoded)
    for a, b in zip(cached, decoded, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3  # JPEG loss only: the same frames
    reader = FrameSource(SIZE, FrameCache(tmp_path / "cache", size=(SIZE, SIZE)))
    list(_snippets(reader, video, layout, times))
    assert reader.used["frame_cache"] == [str(video)]  # a later run reads the cache without writing


def test_without_a_covering_cache_the_video_is_decoded(videos, tmp_path):
    video = videos[16]
    times = video_frame_times(video)
    source = FrameSource(SIZE, FrameCache(tmp_path / "empty", size=(SIZE, SIZE)))
    list(_snippets(source, video, SnippetLayout(len(times), 16, 8), times))
    assert source.used == {"decoded": [str(video)], "frame_cache": []}
