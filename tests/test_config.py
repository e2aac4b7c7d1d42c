"""Config: YAML + overrides, unknown keys fail with a hint, types are checked, cross-field checks run."""

from pathlib import Path

import pytest

from fgclip import FGCLIPConfig
from fgclip.config import ConfigError, load_config
from fgclip.losses.memory_bank import MemoryBankOptions


def _yaml(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_and_overrides(tmp_path):
    path = _yaml(
        tmp_path,
        "model:\n  init: tiny\n  temporal_num_layers: 2\nbank:\n  size: 32\ntrain:\n  max_steps: 7\n",
    )
    config = load_config(path, ["--train.per_device_batch_size", "3", "--learning_rate=2e-4", "--bf16"])
    assert config.model.options == {"temporal_num_layers": 2}
    assert config.bank.size == 32 and config.bank.warmup_steps == 50
    assert config.train.max_steps == 7 and config.train.per_device_batch_size == 3
    assert config.train.learning_rate == pytest.approx(2e-4) and config.train.bf16 is True


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("train:\n  max_step: 3\n", [], "did you mean 'max_steps'"),
        ("", ["--memory_bank_sise", "3"], "did you mean --memory_bank_size"),
        ("", ["--bank.sise", "3"], "did you mean 'size'"),
        ("bank:\n  size: -1\n", [], "bank.size .-1. and bank.warmup_steps .50. must be >= 0"),
        ("trian:\n  max_steps: 3\n", [], "unknown section"),
        ("data:\n  num_frames: eight\n", [], "data.num_frames = 'eight' is not of type int"),
        ("train:\n  max_steps: 0\n", [], "train.max_steps must be >= 1"),
        ("loss:\n  global_weight: 0\n  region_weight: 0\n  hard_negative_weight: 0\n", [], "not all zero"),
        ("loss: 5\n", [], "section 'loss' must be a mapping of keys"),
        ("train:\n  max_steps: [3\n", [], "c.yaml:3:1: YAML syntax error"),
    ],
)
def test_bad_configs_are_refused(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("'", ".")):
        load_config(_yaml(tmp_path, text), overrides)


def test_public_model_config_defaults():
    config = FGCLIPConfig()
    assert config.logit_scale_init_value == pytest.approx(4.6052, abs=1e-4)
    assert config.vision_config.patch_size == 32 and config.vision_config.hidden_size == 768
    bank = MemoryBankOptions()
    assert (bank.size, bank.warmup_steps, bank.fill_during_warmup) == (128, 50, True)


def test_bank_options_of_configs_written_before_the_bank_section_are_read(tmp_path):
    """Run configs saved with checkpoints of earlier versions keep the bank options in `model`."""
    path = _yaml(tmp_path, "model:\n  init: tiny\n  memory_bank_size: 32\n  memory_bank_max_age: 2\n")
    config = load_config(path, ["--memory_bank_warmup_steps", "7"])
    assert (config.bank.size, config.bank.max_age, config.bank.warmup_steps) == (32, 2, 7)
    assert config.model.options == {}


SHIPPED_CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    config = load_config(path)  # unknown keys and out-of-range values are errors
    if config.bank.size > 0:  # a bank that is on must switch on
        assert config.bank.warmup_steps < config.train.max_steps


def test_there_are_shipped_configs():
    assert [p.name for p in SHIPPED_CONFIGS] == ["ucf_crime_vitb16.yaml"]
