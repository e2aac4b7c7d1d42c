"""Each caption kind is truncated to its own length: global captions to the long table, the rest to 77."""

from __future__ import annotations

import numpy as np

from fgclip.data.dataset import ClipDataset, SamplingOptions
from fgclip.data.records import NORMAL, Clip, Region
from fgclip.data.text import CaptionTokenizer, build_word_tokenizer
from fgclip.data.video import write_video

WORDS = [f"w{i}" for i in range(300)]


def _clip(tmp_path, global_words: int, region_words: int) -> Clip:
    video = write_video(tmp_path / "v.mp4", [np.full((32, 32, 3), 128, np.uint8)] * 10, fps=25.0)
    region = Region(
        " ".join(WORDS[:region_words]),
        track=None,
        label=NORMAL,
        hard_negatives=(" ".join(WORDS[:region_words]),),
    )
    return Clip(
        "test:0", video, "v.mp4", " ".join(WORDS[:global_words]), (region,), NORMAL, timestamps=(0.0, 0.3)
    )


def _item(tmp_path, global_words: int, region_words: int, **lengths) -> tuple[dict, CaptionTokenizer]:
    tokenizer = CaptionTokenizer(build_word_tokenizer(WORDS))
    options = SamplingOptions(num_frames=2, image_size=32, **lengths)
    dataset = ClipDataset([_clip(tmp_path, global_words, region_words)], tokenizer, options, train=False)
    return dataset[0], tokenizer


def test_long_global_caption_keeps_up_to_the_long_length(tmp_path):
    item, tokenizer = _item(tmp_path, global_words=150, region_words=150)
    eos = tokenizer.tokenizer.eos_token_id
    assert len(item["caption_ids"]) == 152 and item["caption_ids"][-1] == eos  # BOS + 150 words + EOS
    (region_ids,) = item["region_caption_ids"]
    ((negative_ids,),) = item["hard_negative_ids"]
    assert len(region_ids) == 77 and region_ids[-1] == eos
    assert len(negative_ids) == 77 and negative_ids[-1] == eos


def test_each_kind_truncates_to_its_configured_length(tmp_path):
    item, tokenizer = _item(
        tmp_path, global_words=290, region_words=40, caption_max_length=16, global_caption_max_length=248
    )
    eos = tokenizer.tokenizer.eos_token_id
    assert len(item["caption_ids"]) == 248 and item["caption_ids"][-1] == eos
    assert [len(ids) for ids in item["region_caption_ids"]] == [16]
    assert item["region_caption_ids"][0][-1] == eos
