"""LoRA through peft: adapters on the towers' attention and MLP, heads / temporal / temperatures fully trained,
param groups and the frozen-head check on the peft-wrapped model, a merged model that `from_pretrained`
loads and that computes what the adapted model computes, and exact resume of a LoRA run."""

from __future__ import annotations

import shutil

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from fgclip import FGCLIPModel, builders, checks
from fgclip.cli import main
from fgclip.config import ConfigError, LoraSection, load_config
from fgclip.data.collate import ClipCollator
from fgclip.data.text import build_word_tokenizer
from fgclip.model.configuration import tiny_config
from fgclip.synthetic import synth_vocabulary
from fgclip.tools import training_run as run
from fgclip.training.lora import LORA_STATE_FILE, apply_lora, unwrap_model
from fgclip.training.trainer import GroupRates, param_groups

LORA = ("--train.lora", "{rank: 4, alpha: 8}")


def _peft_model(**lora):
    tokenizer = build_word_tokenizer(synth_vocabulary())
    config = tiny_config(
        vocab_size=len(tokenizer), image_size=32, patch_size=8, vision_width=32, text_width=32,
        vision_layers=2, text_layers=1, heads=2, projection_dim=16, memory_bank_size=8,
    )  # fmt: skip
    return apply_lora(FGCLIPModel(config), LoraSection(**lora))


def test_adapters_on_tower_attention_and_mlp_only_heads_and_temperatures_fully_trained():
    model = _peft_model(rank=2, target_modules=["q_proj", "v_proj", "fc2"])
    assert isinstance(model, PeftModel)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    adapted = {n.split(".lora_")[0] for n in names if ".lora_" in n}
    assert adapted == {
        f"base_model.model.{tower}.encoder.layers.{i}.{module}"
        for tower, layers in (("text_model", 1), ("vision_model", 2))
        for i in range(layers)
        for module in ("self_attn.q_proj", "self_attn.v_proj", "mlp.fc2")
    }  # not the temporal module's own out_proj, not k_proj / out_proj / fc1
    core = unwrap_model(model)
    for head in (
        "visual_projection",
        "text_projection",
        "roi_projection",
        "text_filip_projection",
        "temporal",
    ):
        assert all(p.requires_grad for p in getattr(core, head).parameters()), head
    assert all(s.requires_grad for s in core.logit_scales().values())
    assert not core.text_model.encoder.layers[0].self_attn.q_proj.base_layer.weight.requires_grad
    assert not core.vision_model.embeddings.patch_embedding.weight.requires_grad


def test_param_groups_and_frozen_head_check_on_the_peft_model():
    model = _peft_model()
    rates = GroupRates(text=1e-5, vision=2e-5, heads=3e-4, temperatures=4e-3)
    groups = {g["name"]: g for g in param_groups(model, rates, weight_decay=0.1)}
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert len(set(grouped)) == len(grouped)
    assert set(groups) == {
        "text/decay",
        "vision/decay",
        "heads/decay",
        "heads/no_decay",
        "temperatures/no_decay",
    }
    lora_a = unwrap_model(model).text_model.encoder.layers[0].self_attn.q_proj.lora_A["default"].weight
    assert any(p is lora_a for p in groups["text/decay"]["params"]) and groups["text/decay"]["lr"] == 1e-5

    loss = load_config(None).loss
    checks.check_heads_trainable(model, loss)
    unwrap_model(model).roi_projection.requires_grad_(False)
    with pytest.raises(ConfigError, match="roi_projection \\(used by the region and hard_negative loss\\)"):
        checks.check_heads_trainable(model, loss)


def test_lora_run_saves_a_merged_model_that_from_pretrained_loads(tiny_synth, tmp_path, train_args):
    argv = train_args(
        tiny_synth, tmp_path / "run", "--max_steps", "2", "--per_device_batch_size", "3",
        "--train.warmup_steps", "0", "--learning_rate", "0.01", *LORA,
    )  # fmt: skip
    outcome = run.train(load_config(argv[1], argv[2:]))
    adapted = outcome.model  # the FGCLIPModel with its live LoRA layers
    merged = FGCLIPModel.from_pretrained(outcome.model_dir)
    assert not any("lora" in name for name in merged.state_dict())
    assert (outcome.model_dir / LORA_STATE_FILE).is_file()
    # the adapters trained enough for the merge to matter: merged weight != base weight
    q_proj = adapted.text_model.encoder.layers[0].self_attn.q_proj
    folded = merged.text_model.encoder.layers[0].self_attn.q_proj.weight
    assert (folded - q_proj.base_layer.weight).abs().max() > 1e-3

    dataset = builders.dataset_from_manifests(
        load_config(argv[1], argv[2:]).data,
        [str(tiny_synth / "train.json")],
        outcome.tokenizer,
        builders.model_image_size(merged),
        train=False,
    )
    batch = ClipCollator(outcome.tokenizer.pad_token_id)([dataset[i] for i in range(3)])
    adapted.eval(), merged.eval()
    with torch.no_grad():
        expected, got = adapted(**batch), merged(**batch)
    for key in (
        "clip_embeds",
        "caption_embeds",
        "region_embeds",
        "region_text_embeds",
        "hard_negative_embeds",
    ):
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5, msg=key)


def test_lora_run_resumes_exactly(tiny_synth, tmp_path, train_args):
    steps = (
        "--max_steps",
        "4",
        "--per_device_batch_size",
        "3",
        "--save_steps",
        "2",
        "--save_total_limit",
        "3",
    )
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(train_args(tiny_synth, straight, *steps, *LORA)) == 0
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    assert main([*train_args(tiny_synth, resumed, *steps, *LORA), "--resume", "latest"]) == 0
    a = load_file(straight / "checkpoint-4" / LORA_STATE_FILE)
    b = load_file(resumed / "checkpoint-4" / LORA_STATE_FILE)
    assert a.keys() == b.keys() and any(".lora_A." in k for k in a) and "memory_bank.image_embeds" in a
    for key in a:
        assert torch.equal(a[key], b[key]), key
