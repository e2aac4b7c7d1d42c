"""Train-section config: the nested `lora` section, the non-finite limit, contradictory resume settings."""

from __future__ import annotations

import pytest

from fgclip.config import ConfigError, LoraSection, load_config


def test_lora_section_from_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lora: {rank: 4, target_modules: [q_proj, v_proj]}\n")
    lora = load_config(path).train.lora
    assert lora == LoraSection(rank=4, alpha=16.0, target_modules=["q_proj", "v_proj"])
    assert load_config(None, ["--train.lora", "{}"]).train.lora == LoraSection()
    assert load_config(None).train.lora is None
    saved = tmp_path / "saved.yaml"
    load_config(path).save(saved)
    assert load_config(saved).train.lora == lora  # round-trips through the run's saved config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--train.lora", "{rnak: 4}"], r"train.lora: unknown key\(s\) \['rnak'\]"),
        (["--train.lora", "{rank: 0}"], "rank must be >= 1"),
        (["--train.lora", "{target_modules: [qkv]}"], "choose from"),
        (["--train.lora", "{towers: [audio]}"], r"towers=\['audio'\]"),
        (["--train.lora", "{rank: four}"], "train.lora.rank = 'four' is not of type int"),
        (["--max_consecutive_nonfinite", "0"], "max_consecutive_nonfinite must be >= 1"),
        (["--resume", "latest", "--overwrite_output_dir"], "contradict each other"),
    ],
)
def test_bad_train_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
