"""`model.init` naming a config.json (or a directory with one and no weights): that architecture, RANDOM init."""

from __future__ import annotations

import json

import pytest
import torch
from real_dirs import fgclip_base_dir
from transformers import CLIPConfig, CLIPModel

from fgclip.builders import build_model
from fgclip.config import ConfigError, ModelSection
from fgclip.model.configuration import tiny_config
from fgclip.model.loading import is_config_only, load_pretrained
from fgclip.model.modeling import FGCLIPModel


def _tiny_config_dir(path):
    config = tiny_config(image_size=32, patch_size=8, vision_width=32, vision_layers=1, text_width=32,
                         text_layers=1, heads=2, projection_dim=32)  # fmt: skip
    config.save_pretrained(path)  # config.json only
    return path


def test_released_config_builds_vit_b16_at_random_init():
    base = fgclip_base_dir()
    with torch.device("meta"):  # the architecture and its parameter count, without 600 MB of random numbers
        model, report = load_pretrained(base)
        raw = {k: v for k, v in json.loads((base / "config.json").read_text()).items()
               if k not in ("architectures", "auto_map", "model_type")}  # fmt: skip
        plain = CLIPModel(CLIPConfig(**raw))
    vision, text = model.config.vision_config, model.config.text_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size) == (
        768,
        12,
        16,
        224,
    )
    assert (text.hidden_size, text.vocab_size, text.eos_token_id, text.hidden_act) == (
        512,
        49408,
        2,
        "quick_gelu",
    )
    fgclip_count = sum(p.numel() for p in model.parameters())
    plain_count = sum(p.numel() for p in plain.parameters())
    assert plain_count == 149_620_737  # OpenAI CLIP ViT-B/16
    # FG-CLIP's own parts on top: region head, long-caption head, two 248-position tables, temporal module.
    extras = {
        "roi_projection": 768 * 512,
        "text_filip_projection": 512 * 512,
        "long position tables": 2 * 248 * 512,
        "temporal": sum(p.numel() for p in model.temporal.parameters()),
        "two more temperatures": 2,
    }
    assert fgclip_count == plain_count + sum(extras.values())
    assert report.random_init and report.to_dict()["random_init"] is True
    assert report.summary().startswith(f"RANDOM INIT: {base} is a config without weights")
    assert f"{fgclip_count:,} parameters" in report.summary()
    assert not report.loaded and len(report.initialised) == len(model.state_dict())


def test_config_only_directory_and_file_build_the_architecture_at_random(tmp_path):
    directory = _tiny_config_dir(tmp_path / "arch")
    assert is_config_only(directory) and is_config_only(directory / "config.json")
    torch.manual_seed(0)
    from_dir, report = build_model(ModelSection(init=str(directory)), tokenizer=None)
    torch.manual_seed(1)
    from_file, _ = build_model(
        ModelSection(init=str(directory / "config.json"), options={"max_frames": 8}), None
    )
    assert report.random_init and from_file.config.max_frames == 8  # options still override config fields
    assert from_dir.config.vision_config.hidden_size == 32
    weight = "vision_model.embeddings.patch_embedding.weight"
    assert not torch.equal(
        from_dir.state_dict()[weight], from_file.state_dict()[weight]
    )  # random, not loaded
    features = from_dir(torch.randn(1, 2, 3, 32, 32), torch.ones(1, 2, dtype=torch.bool))
    assert features["clip_embeds"].shape == (1, 32)


def test_a_directory_with_weights_is_loaded_not_randomised(tmp_path):
    config = json.loads((_tiny_config_dir(tmp_path / "arch") / "config.json").read_text())
    torch.manual_seed(0)
    model = FGCLIPModel(tiny_config(image_size=32, patch_size=8, vision_width=32, vision_layers=1, text_width=32,
                                    text_layers=1, heads=2, projection_dim=32))  # fmt: skip
    model.save_pretrained(tmp_path / "trained")
    assert (
        json.loads((tmp_path / "trained" / "config.json").read_text())["projection_dim"]
        == config["projection_dim"]
    )
    assert not is_config_only(tmp_path / "trained")
    loaded, report = load_pretrained(tmp_path / "trained")
    assert not report.random_init and not report.summary().startswith("RANDOM")
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_eval_refuses_a_random_model_unless_asked(tmp_path):
    from fgclip.builders import load_run
    from fgclip.cli import main
    from fgclip.data.text import build_word_tokenizer
    from fgclip.synthetic import synth_vocabulary

    run = _tiny_config_dir(tmp_path / "model")
    build_word_tokenizer(synth_vocabulary()).save_pretrained(run)
    (run / "fgclip_config.yaml").write_text("model: {init: tiny, tokenizer: synthetic}\n")
    with pytest.raises(ConfigError, match="RANDOM.*--allow-random-init"):
        load_run(run, device="cpu")
    assert main(["eval", str(run), "--no-progress", "--device", "cpu"]) == 1
    loaded = load_run(run, device="cpu", allow_random_init=True)
    assert loaded.load_report.random_init


def test_doctor_warns_that_training_starts_from_random_init(tmp_path):
    from fgclip.config import load_config
    from fgclip.tools.doctor import check_model

    directory = _tiny_config_dir(tmp_path / "arch")
    config = load_config(None, ["--model.init", str(directory), "--model.tokenizer", "synthetic"])
    warnings = [f.message for f in check_model(config) if f.severity == "warning" and f.check == "model"]
    assert warnings == [
        f"model.init={directory} is a config without weights: training starts from RANDOM init"
    ]
