"""The real CLIP BPE tokenizer (shared/data/real/fgclip_base): real caption lengths, truncation, EOS pooling.

Skipped, with the reason, when the shared folder is not beside the checkout.
"""

from __future__ import annotations

import json

import pytest
import torch
from real_dirs import fgclip_base_dir, ucf_clip_list

from fgclip.builders import build_tokenizer
from fgclip.checks import check_tokenizer
from fgclip.config import ModelSection
from fgclip.data.text import CaptionTokenizer, LengthSummary, summarize_lengths, token_lengths
from fgclip.model.configuration import tiny_config
from fgclip.model.modeling import FGCLIPModel, _eos_index

BOS, EOS = (
    49406,
    49407,
)  # <|startoftext|>, <|endoftext|>: the last two entries of CLIP's 49,408-token vocabulary


@pytest.fixture(scope="module")
def base():
    return fgclip_base_dir()


@pytest.fixture(scope="module")
def tokenizer(base):
    return build_tokenizer(ModelSection(init="tiny", tokenizer=str(base)))


@pytest.fixture(scope="module")
def ucf_captions():
    entries = json.loads(ucf_clip_list().read_text())
    return (
        [entry["global_caption"] for entry in entries],
        [caption for entry in entries for caption in entry["region_captions"]],
    )


def test_model_tokenizer_names_the_released_directory(base, tokenizer):
    assert (len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id) == (49408, BOS, EOS)
    # CLIP BPE, lower-cased: "a" 320, "man" 786, "in" 530, "red" 736, "shirt" 2523, "runs" 5586, "." 269.
    assert tokenizer(["A man in a RED shirt runs."])["input_ids"] == [
        [BOS, 320, 786, 530, 320, 736, 2523, 5586, 269, EOS]
    ]
    # The released directory holds config.json and the tokenizer: model.init alone finds it.
    from_init = build_tokenizer(ModelSection(init=str(base)))
    assert from_init("a man")["input_ids"] == tokenizer("a man")["input_ids"]


def test_every_ucf_caption_in_real_tokens(tokenizer, ucf_captions):
    global_captions, region_captions = ucf_captions
    assert (len(global_captions), len(region_captions)) == (2247, 2500)
    global_lengths = summarize_lengths(tokenizer, "global", global_captions, 248)
    region_lengths = summarize_lengths(tokenizer, "region", region_captions, 77)
    # BPE splits words (punctuation, "t-shirt" -> 3 tokens): every caption has at least words + 2 tokens.
    assert all(
        n >= len(text.split()) + 2 for n, text in zip(region_lengths.lengths, region_captions, strict=True)
    )
    assert token_lengths(tokenizer, region_captions[:50]) == [
        len(tokenizer(text)["input_ids"]) for text in region_captions[:50]
    ]
    # Measured on the file: the longest global caption is 22 tokens, the longest region caption 39
    # ("A person in white and another in black remove flowerpots ..."); none comes near CLIP's 77.
    assert (global_lengths.longest, region_lengths.longest) == (22, 39)
    assert global_lengths.share_over(77) == region_lengths.share_over(77) == 0.0
    assert region_lengths.percentile(50) <= region_lengths.percentile(95) <= region_lengths.longest


def test_truncation_keeps_eos_and_is_reported(tokenizer, ucf_captions):
    _, region_captions = ucf_captions
    longest = max(region_captions, key=lambda text: len(tokenizer(text)["input_ids"]))
    tripled = " ".join([longest] * 3)  # 3 x 37 content tokens + BOS + EOS = 113
    summary = summarize_lengths(tokenizer, "region", [longest, tripled], 77)
    assert summary.lengths == (39, 113) and summary.over() == 1 and summary.share_over() == 0.5
    assert "1 (50.0%) over 77 are truncated" in summary.describe()
    (short,), (long,) = (
        CaptionTokenizer(tokenizer, 77)([tripled]),
        CaptionTokenizer(tokenizer, 77)([tripled], 248),
    )
    assert len(short) == 77 and short[0] == BOS and short[-1] == EOS  # cut, EOS kept: CLIP still pools at EOS
    assert len(long) == 113 and long == tokenizer(tripled)["input_ids"]


def test_length_summary_percentiles_are_nearest_rank():
    summary = LengthSummary("region", 77, (5, 1, 4, 2, 3, 100))
    assert [summary.percentile(q) for q in (0, 50, 95, 100)] == [1, 3, 100, 100]
    assert summary.over() == 1 and summary.over(3) == 3


def test_eos_pooling_under_the_released_legacy_eos_id(base, tokenizer):
    released = json.loads((base / "config.json").read_text())["text_config"]
    assert released["eos_token_id"] == 2  # HF's legacy CLIP config: pool at the largest token id
    config = tiny_config(
        vocab_size=released["vocab_size"],
        bos_token_id=BOS,
        eos_token_id=2,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = FGCLIPModel(config).eval()
    check_tokenizer(model, tokenizer)  # EOS is the largest id: the legacy rule finds it
    captions = ["a man in a red shirt runs", "a car"]
    batch = tokenizer(captions, padding=True, return_tensors="pt")  # pads with <|endoftext|> too
    ids, mask = batch["input_ids"], batch["attention_mask"]
    real_eos = mask.sum(-1) - 1  # (N,) the EOS each caption ends with
    assert ids[1, real_eos[1] + 1 :].eq(tokenizer.pad_token_id).all() and real_eos[1] < ids.shape[1] - 1
    assert torch.equal(_eos_index(ids, 2), real_eos)  # argmax: the FIRST largest id, not a pad after it
    with torch.no_grad():
        out = model.text_model(input_ids=ids, attention_mask=mask)
        rows = torch.arange(len(captions))
        assert torch.equal(out.pooler_output, out.last_hidden_state[rows, real_eos])
        # Both text paths give the padded short caption the embedding it has alone (pooled at its own EOS).
        alone = tokenizer(captions[1:], return_tensors="pt")
        for encode in (model.get_text_features, model.get_caption_features):
            torch.testing.assert_close(
                encode(ids, mask)[1], encode(alone["input_ids"], alone["attention_mask"])[0]
            )


def test_doctor_reports_lengths_in_the_model_tokens_and_warns_for_cut_captions(base, tokenizer, tmp_path):
    from fgclip.config import load_config
    from fgclip.data.records import NORMAL, Clip, Region
    from fgclip.tools.doctor import check_caption_lengths

    long_region = " ".join(["a man in a red shirt runs past a parked car"] * 8)  # 8 x 11 + 2 = 90 tokens
    short_region = "a man runs"
    clips = [
        Clip(
            f"m.json:{i}",
            tmp_path / "v.mp4",
            "v.mp4",
            "a man runs past a car",
            (Region(text, None, NORMAL),),
            NORMAL,
        )
        for i, text in enumerate([long_region, short_region])
    ]
    config = load_config(None, ["--model.tokenizer", str(base)])
    findings = check_caption_lengths(config, clips)
    messages = {(f.severity, f.message.split(":")[0]) for f in findings}
    assert ("info", "global") in messages and ("info", "region") in messages
    warning = [f.message for f in findings if f.severity == "warning"]
    assert warning == [
        "1 of 2 region captions are longer than 77 tokens (the longest 90) and are cut to 77 by the short "
        "(77-position) table"
    ]
    assert len(tokenizer(long_region)["input_ids"]) == 90  # the count the warning states, in real BPE tokens


def test_a_directory_without_tokenizer_files_is_named_in_the_error(tmp_path):
    from fgclip.config import ConfigError

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"model.tokenizer: .*no tokenizer files .*vocab.json"):
        build_tokenizer(ModelSection(init="tiny", tokenizer=str(tmp_path)))
