"""The shipped DeepSpeed ZeRO-2 config, processed by HF's own Trainer-side DeepSpeed logic with the
TrainingArguments `fgclip train` builds: every "auto" is filled, nothing contradicts the arguments, and the
optimizer and scheduler stay fgclip's (param groups, cosine). DeepSpeed itself is not installed here (CPU):
this validates the config, it does not run it."""

from __future__ import annotations

import json
from functools import partialmethod
from pathlib import Path

import pytest
import torch
from accelerate.utils.deepspeed import HfDeepSpeedConfig
from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

from fgclip.builders import training_arguments
from fgclip.config import ConfigError, check_deepspeed_file, load_config
from fgclip.model.configuration import tiny_config
from fgclip.model.modeling import FGCLIPModel

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "deepspeed_zero2.json"


class TrainerSideConfig(HfDeepSpeedConfig):
    """`HfTrainerDeepSpeedConfig`'s methods on accelerate's config class: the HF class refuses to be built
    without the deepspeed package, but its fill-and-match logic needs none of it."""

    fill_match = HfTrainerDeepSpeedConfig.fill_match
    fill_only = partialmethod(HfTrainerDeepSpeedConfig.fill_match, must_match=False)
    is_auto = HfTrainerDeepSpeedConfig.is_auto
    trainer_config_process = HfTrainerDeepSpeedConfig.trainer_config_process
    trainer_config_finalize = HfTrainerDeepSpeedConfig.trainer_config_finalize
    dtype = HfTrainerDeepSpeedConfig.dtype

    def __init__(self, config):
        super().__init__(config)
        self._dtype = None
        self.mismatches = []


def _autos(node, path="") -> list[str]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _autos(value, f"{path}.{key}")]
    return [path] if node == "auto" else []


@pytest.mark.parametrize("bf16", [True, False])
def test_zero2_config_is_complete_and_consistent_with_the_training_arguments(bf16, tmp_path):
    config = load_config(
        None,
        [
            "--train.output_dir", str(tmp_path), "--per_device_batch_size", "4",
            "--gradient_accumulation_steps", "3", "--max_grad_norm", "0.5", "--bf16", str(bf16).lower(),
        ],
    )  # fmt: skip
    args = training_arguments(config.train, config.data, config.loss)
    model = FGCLIPModel(
        tiny_config(vocab_size=64, vision_width=32, text_width=32, projection_dim=16, heads=2)
    )

    ds = TrainerSideConfig(json.loads(CONFIG.read_text()))
    ds.trainer_config_process(args)
    ds.trainer_config_finalize(args, model, num_training_steps=config.train.max_steps)  # raises on mismatches

    filled = ds.config
    assert _autos(filled) == []
    assert filled["zero_optimization"]["stage"] == 2
    assert filled["train_micro_batch_size_per_gpu"] == 4 and filled["gradient_accumulation_steps"] == 3
    assert filled["train_batch_size"] == 4 * 3 * args.world_size
    assert filled["gradient_clipping"] == 0.5
    assert filled["bf16"]["enabled"] is bf16 and ds.dtype() == (torch.bfloat16 if bf16 else torch.float32)
    assert filled["zero_optimization"]["reduce_bucket_size"] == 32 * 32  # from the text tower's width
    # no DeepSpeed optimizer or scheduler: HF then builds fgclip's param groups and the configured schedule
    assert "optimizer" not in filled and "scheduler" not in filled


def test_deepspeed_setting_must_name_a_json_file(tmp_path):
    check_deepspeed_file(str(CONFIG))
    broken = tmp_path / "ds.json"
    broken.write_text("{stage: 2")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_config(None, ["--train.deepspeed", str(broken)])
    with pytest.raises(ConfigError, match="is not a file"):
        load_config(None, ["--train.deepspeed", str(tmp_path / "missing.json")])
