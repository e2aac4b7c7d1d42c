"""Dataset + collate on real (synthetic) mp4s: the batch contract, regions, spans, hard negatives."""

import json

import numpy as np
import pytest
import torch

from fgclip.data.batch import Batch, validate_batch
from fgclip.data.collate import ClipCollator
from fgclip.data.dataset import ClipDataset, SamplingOptions, clip_span, sample_times
from fgclip.data.formats.cliplist import read_clip_list, read_hard_negatives
from fgclip.data.paths import VideoResolver
from fgclip.data.records import FULL_FRAME
from fgclip.data.text import CaptionTokenizer, build_word_tokenizer
from fgclip.synthetic import generate, synth_vocabulary


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), seed=3, num_videos=12)


@pytest.fixture(scope="module")
def dataset(synth):
    negatives = read_hard_negatives(synth.hard_negatives_path)
    clips = read_clip_list(synth.train_path, VideoResolver(synth.out_dir), hard_negatives=negatives)
    tokenizer = CaptionTokenizer(build_word_tokenizer(synth_vocabulary()))
    options = SamplingOptions(num_frames=4, image_size=32, max_hard_negatives=3, context_s=0.5)
    return ClipDataset(clips, tokenizer, options, train=False)


def test_batch_contract_shapes(dataset):
    items = [dataset[i] for i in range(len(dataset))]
    batch = ClipCollator(pad_token_id=3)(items)
    validate_batch(batch)
    B, T, R = len(items), 4, batch["region_valid"].shape[1]
    K, L = batch["hard_negative_ids"].shape[2], batch["caption_ids"].shape[1]
    assert set(batch) == set(Batch.__annotations__)
    assert batch["pixel_values"].shape == (B, T, 3, 32, 32)
    assert batch["region_boxes"].shape == (B, T, R, 4)
    assert batch["region_caption_ids"].shape[:2] == (B, R)
    assert batch["hard_negative_ids"].shape[:3] == (B, R, K) and K == 3
    assert batch["caption_mask"].shape == (B, L)
    # every valid region is visible on a real frame; padded slots are never valid
    visible = (batch["region_box_mask"] & batch["frame_mask"].unsqueeze(-1)).any(1)
    assert bool((visible | ~batch["region_valid"]).all())
    # EOS is the last real token of every caption
    last = batch["caption_mask"].sum(1) - 1
    assert bool((batch["caption_ids"][torch.arange(B), last] == 1).all())


def test_normal_region_is_the_full_frame_and_abnormal_follows_its_track(dataset):
    for i, clip in enumerate(dataset.clips):
        item = dataset[i]
        boxes, visible = item["region_boxes"], item["region_box_mask"]
        if clip.is_abnormal:
            assert visible.any() and not torch.allclose(boxes[visible], torch.tensor(FULL_FRAME))
            assert item["region_labels"] == [1] and item["clip_label"] == 1
        else:
            assert visible.all() and torch.allclose(boxes, torch.tensor(FULL_FRAME))
            assert item["region_labels"] == [0]


def test_hard_negatives_are_joined_to_regions(dataset, synth):
    items = json.loads(synth.hard_negatives_path.read_text())["items"]
    wanted = {(i["video"], i["region_index"]): i["hard_negative"] for i in items}
    clip = dataset.clips[0]
    assert clip.regions[0].hard_negatives == tuple(wanted[(clip.video_key, 0)])


def test_abnormal_span_is_track_plus_context_and_eval_sampling_is_deterministic(dataset):
    clip = next(c for c in dataset.clips if c.is_abnormal)
    times = [k.time_s for k in clip.regions[0].track.keyframes]
    span = clip_span(clip, duration_s=4.0, options=dataset.options)
    assert span == pytest.approx((max(0.0, times[0] - 0.5), min(4.0, times[-1] + 0.5)))
    assert np.allclose(sample_times((1.0, 3.0), 4), [1.25, 1.75, 2.25, 2.75])
    index = dataset.clips.index(clip)
    assert torch.equal(dataset[index]["pixel_values"], dataset[index]["pixel_values"])


def test_regions_beyond_max_regions_are_counted(dataset):
    from dataclasses import replace

    clip = dataset.clips[0]
    many = replace(clip, regions=clip.regions * 3)
    small = ClipDataset([many], dataset.tokenizer, replace(dataset.options, max_regions=1), train=False)
    item = small[0]
    assert len(item["region_caption_ids"]) == 1 and item["dropped_regions"] == 2


def test_missing_video_fails_at_construction(dataset, tmp_path):
    from dataclasses import replace

    gone = replace(dataset.clips[0], video=tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        ClipDataset([gone], dataset.tokenizer, dataset.options, train=True)
