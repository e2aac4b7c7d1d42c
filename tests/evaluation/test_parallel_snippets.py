"""Snippets decoded in DataLoader workers give the serial path's scores bit for bit (float32, CPU), in the
same order, and count their frame source the same way."""

import numpy as np
import pytest
import torch
from tiny_models import tiny_fgclip

from fgclip.data.frames import FrameSource
from fgclip.data.video import write_video
from fgclip.evaluation.export import export_features
from fgclip.evaluation.measures import score_videos
from fgclip.evaluation.snippet_options import SnippetOptions
from fgclip.evaluation.zeroshot import PromptBank

SIZE = 32


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    paths = {}
    for name, frames in (("a", 40), ("b", 17), ("c", 55), ("d", 9)):
        rng = np.random.default_rng(frames)
        pixels = rng.integers(0, 255, (frames, 48, 64, 3), dtype=np.uint8)
        paths[name] = root / f"{name}.mp4"
        write_video(paths[name], pixels, 25.0)
    return paths


@pytest.fixture(scope="module")
def model():
    return tiny_fgclip(seed=0).eval()  # 32 px = SIZE


def test_parallel_scores_equal_the_serial_ones(videos, model):
    bank = PromptBank(("Normal", "A"), torch.nn.functional.normalize(torch.randn(2, 16), dim=-1),
                      torch.tensor([0, 1]), logit_scale=10.0)  # fmt: skip
    runs = {}
    for workers in (0, 2):
        frames = FrameSource(SIZE)
        options = SnippetOptions(frames_per_snippet=4, batch_frames=8, workers=workers)
        runs[workers] = (score_videos(model, videos, bank, frames, options, progress=False), frames.used)
    (serial, used_serial), (parallel, used_parallel) = runs[0], runs[2]
    assert list(parallel) == list(serial) == sorted(videos)
    for name in serial:
        assert np.array_equal(parallel[name].frame_scores, serial[name].frame_scores), name
        assert np.array_equal(parallel[name].snippet_class_probs, serial[name].snippet_class_probs), name
    assert sorted(used_parallel["decoded"]) == sorted(used_serial["decoded"])


def test_parallel_feature_export_equals_the_serial_one(videos, model, tmp_path):
    for workers in (0, 2):
        options = SnippetOptions(frames_per_snippet=4, batch_frames=8, workers=workers)
        export_features(model, list(videos.values()), tmp_path / str(workers), FrameSource(SIZE), options,
                        progress=False)  # fmt: skip
    for name in videos:
        assert np.array_equal(
            np.load(tmp_path / "0" / f"{name}.npy"), np.load(tmp_path / "2" / f"{name}.npy")
        )
