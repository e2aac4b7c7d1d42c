"""`fgclip train` start-up checks: the heads table is printed, bf16 parameters and frozen heads are refused."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from fgclip import builders, checks
from fgclip.config import ConfigError, load_config
from fgclip.data.text import build_word_tokenizer
from fgclip.model.configuration import tiny_config
from fgclip.model.loading import load_pretrained
from fgclip.model.modeling import FGCLIPModel
from fgclip.synthetic import synth_vocabulary
from fgclip.tools import training_run as run

TINY = dict(
    image_size=32,
    patch_size=8,
    vision_width=32,
    text_width=32,
    vision_layers=1,
    text_layers=1,
    heads=2,
    projection_dim=16,
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(synth_vocabulary())


def _model(tokenizer, **options) -> FGCLIPModel:
    return FGCLIPModel(
        tiny_config(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **TINY,
            **options,
        )
    )


def _train_with(monkeypatch, tmp_path, model, *overrides):
    """Run the real `train` up to its start-up checks with `model` in place of the configured one."""
    monkeypatch.setattr(builders, "build_model", lambda section, tokenizer: (model, None))
    config = load_config(
        None, ["--model.tokenizer", "synthetic", "--train.output_dir", str(tmp_path), *overrides]
    )
    return run.train(config)


def test_train_prints_heads_and_refuses_bf16_parameters(monkeypatch, tmp_path, tokenizer, capsys):
    model = _model(tokenizer).to(torch.bfloat16)
    with pytest.raises(ConfigError, match="most bf16 updates round to zero"):
        _train_with(monkeypatch, tmp_path, model)
    printed = capsys.readouterr().out
    assert "heads and temperatures:" in printed
    assert re.search(r"logit_scale_finegraind\s+\(\)\s+bfloat16\s+yes\s+4\.59", printed)


@pytest.mark.parametrize(
    ("frozen", "loss"),
    [
        ("logit_scale_finegraind", "region"),
        ("roi_projection", "region and hard_negative"),
        ("temporal", "global"),
    ],
)
def test_train_refuses_a_frozen_head_that_a_loss_uses(monkeypatch, tmp_path, tokenizer, frozen, loss):
    model = _model(tokenizer)
    getattr(model, frozen).requires_grad_(False)
    with pytest.raises(ConfigError, match=f"{frozen} \\(used by the {loss} loss\\)"):
        _train_with(monkeypatch, tmp_path, model)


def test_a_frozen_head_of_a_disabled_loss_is_allowed(monkeypatch, tmp_path, tokenizer):
    model = _model(tokenizer)
    model.logit_scale_hardneg.requires_grad_(False)
    # The checks pass, so train goes on to the data and stops there (no manifests in this config).
    with pytest.raises(ConfigError, match="no manifests"):
        _train_with(monkeypatch, tmp_path, model, "--loss.hard_negative_weight", "0")


def test_bf16_checkpoint_loads_into_trainable_fp32(tmp_path, tokenizer):
    _model(tokenizer).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(weights).items()}, weights)
    model, report = load_pretrained(tmp_path)
    checks.check_precision(model)
    assert report.cast_to_fp32 == {"torch.bfloat16": len(report.loaded)}


def test_openai_pt_without_a_tokenizer_names_the_setting(tmp_path):
    checkpoint = tmp_path / "ViT-B-32.pt"
    checkpoint.write_bytes(b"")
    section = load_config(None, ["--model.init", str(checkpoint)]).model
    with pytest.raises(
        ConfigError, match=r"an OpenAI CLIP \.pt carries no tokenizer\); set model\.tokenizer"
    ):
        builders.build_tokenizer(section)


def test_tokenizer_of_another_model_is_refused(tokenizer):
    model = _model(tokenizer, max_positions=77)
    model.config.text_config.eos_token_id = tokenizer.eos_token_id + 5
    with pytest.raises(ConfigError, match="pools text at EOS id"):
        checks.check_tokenizer(model, tokenizer)
    checks.check_tokenizer(_model(tokenizer), tokenizer)


def test_caption_lengths_must_fit_the_position_tables(tokenizer):
    model = _model(tokenizer)
    data = load_config(None, ["--data.global_caption_max_length", "300"]).data
    with pytest.raises(
        ConfigError, match="global_caption_max_length \\(300\\) exceeds the model's long position table"
    ):
        checks.check_caption_lengths(data, model)
