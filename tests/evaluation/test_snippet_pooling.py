"""Snippet pooling for zero-shot scores: known window positions, each rule against a direct computation."""

import numpy as np
import pytest
import torch

from fgclip.data.frames import FrameSource
from fgclip.data.video import write_video
from fgclip.evaluation.pooling import SnippetPooling, pooled_embeddings, window_sample_indices
from fgclip.evaluation.snippet_options import SnippetOptions
from fgclip.evaluation.snippets import embed_video_snippets, score_snippets
from fgclip.evaluation.zeroshot import PromptBank
from fgclip.model.configuration import tiny_config
from fgclip.model.modeling import FGCLIPModel

SIZE = 32
FPS = 25.0


@pytest.fixture(scope="module")
def snippets(tmp_path_factory):
    """64 frames = 4 full 16-frame snippets, 8 samples each; frames differ (a moving bright square)."""
    frames = []
    for i in range(64):
        frame = np.full((SIZE, SIZE, 3), 30, np.uint8)
        x = i % (SIZE - 8)
        frame[8:16, x : x + 8] = 255
        frames.append(frame)
    video = write_video(tmp_path_factory.mktemp("v") / "moving.mp4", frames, fps=FPS, gop_size=8)
    torch.manual_seed(0)
    config = tiny_config(vocab_size=16, image_size=SIZE, patch_size=8, vision_width=32, text_width=32,
                         vision_layers=1, text_layers=1, heads=2, projection_dim=16)  # fmt: skip
    model = FGCLIPModel(config).eval()
    return model, embed_video_snippets(model, video, FrameSource(SIZE), SnippetOptions(frames_per_snippet=8))


def _bank():
    torch.manual_seed(1)
    embeds = torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)
    return PromptBank(("Normal", "A"), embeds, torch.tensor([0, 1, 1]), logit_scale=20.0)


def test_window_indices_are_the_nearest_samples_of_a_centred_window():
    times = np.arange(40, dtype=np.float64).reshape(5, 8) / 8  # 5 snippets of 1 s, samples every 1/8 s
    indices = window_sample_indices(times, duration_s=5.0, window_s=2.0, frames=4)  # (5, 4)
    # snippet 2: centre 2.4375 s, window [1.4375, 3.4375], bin centres 1.6875, 2.1875, 2.6875, 3.1875 s
    assert indices[2].tolist() == [13, 17, 21, 25]  # = round(centre * 8): 13.5 -> 13 (ties go left)
    # snippet 0: the window is shifted inside the video: [0, 2] s, bin centres 0.25, 0.75, 1.25, 1.75
    assert indices[0].tolist() == [2, 6, 10, 14]
    # the last snippet: [3, 5] s
    assert indices[4].tolist() == [26, 30, 34, 38]
    # a window longer than the video pools the whole video, for every snippet alike
    whole = window_sample_indices(times, duration_s=5.0, window_s=60.0, frames=4)
    assert (whole == whole[0]).all() and whole[0].tolist() == [5, 15, 25, 35]
    # a one-frame video: every window position is its only sample
    assert window_sample_indices(np.zeros((1, 1)), 0.04, 3.0, 4).tolist() == [[0, 0, 0, 0]]


def test_snippet_pooling_is_the_snippet_embeddings(snippets):
    model, video = snippets
    assert pooled_embeddings(model, video, SnippetPooling("snippet")) is video.embeds
    assert video.frame_embeds.shape == (4, 8, 16) and video.sample_times.shape == (4, 8)


def test_frame_pooling_averages_each_frames_probabilities(snippets):
    model, video = snippets
    bank = _bank()
    scores = score_snippets(video, bank, embeds=pooled_embeddings(model, video, SnippetPooling("frame")))
    for s in range(4):
        per_frame = bank.class_probabilities(torch.from_numpy(video.frame_embeds[s]))  # (8, C)
        assert np.allclose(scores.snippet_class_probs[s], per_frame.mean(0).numpy(), atol=1e-12)
    # and it differs from pooling the frames first (the frames differ)
    pooled = score_snippets(video, bank)
    assert not np.allclose(scores.snippet_scores, pooled.snippet_scores, atol=1e-6)


def test_a_window_of_one_snippet_is_snippet_pooling(snippets):
    """A window of exactly one snippet (16 frames, 8 samples) picks that snippet's own samples."""
    model, video = snippets
    window = SnippetPooling("window", window_s=16 / FPS, window_frames=8)
    assert np.allclose(pooled_embeddings(model, video, window), video.embeds, atol=1e-6)


def test_a_window_pools_frames_beyond_its_snippet(snippets):
    model, video = snippets
    window = SnippetPooling("window", window_s=48 / FPS, window_frames=8)
    embeds = pooled_embeddings(model, video, window)  # (4, D)
    indices = window_sample_indices(video.sample_times, video.duration_s, 48 / FPS, 8)
    flat = torch.from_numpy(video.frame_embeds.reshape(32, 16))
    with torch.no_grad():
        expected = model.clip_embeddings(flat[torch.from_numpy(indices)], torch.ones(4, 8, dtype=torch.bool))
    assert np.allclose(embeds, expected.numpy(), atol=1e-6)
    assert np.abs(embeds - video.embeds).max() > 1e-5  # other frames: another embedding
    assert (indices[1] < 8).any() and (indices[1] >= 16).any()  # snippet 1's window reaches snippets 0 and 2


@pytest.mark.parametrize("bad", [dict(rule="mean"), dict(window_s=0.0), dict(window_frames=0)])
def test_bad_pooling_options_are_refused(bad):
    with pytest.raises(ValueError):
        SnippetPooling(**bad)
