"""`fgclip inspect` through the real entry point, on an HF CLIP directory and an OpenAI-layout `.pt`."""

from __future__ import annotations

import json
import math
import re

import torch
from tiny_models import save_tiny_hf_clip

from fgclip.cli import main

HEADS = [
    "visual_projection.weight",
    "text_projection.weight",
    "roi_projection.weight",
    "text_filip_projection.weight",
]
TEMPERATURES = ["logit_scale", "logit_scale_finegraind", "logit_scale_hardneg"]


def _openai_state_dict(
    width: int = 64, layers: int = 1, embed: int = 32, vocab: int = 48
) -> dict[str, torch.Tensor]:
    """Random tensors in OpenAI CLIP's key layout and shapes (both towers `width` wide, 4x4 patches of 8)."""
    state = {
        "visual.conv1.weight": torch.randn(width, 3, 8, 8),
        "visual.class_embedding": torch.randn(width),
        "visual.positional_embedding": torch.randn(17, width),
        "visual.proj": torch.randn(width, embed),
        "token_embedding.weight": torch.randn(vocab, width),
        "positional_embedding": torch.randn(77, width),
        "text_projection": torch.randn(width, embed),
        "logit_scale": torch.tensor(math.log(50.0)),
    }
    for norm in ("visual.ln_pre", "visual.ln_post", "ln_final"):
        state |= {f"{norm}.weight": torch.ones(width), f"{norm}.bias": torch.zeros(width)}
    for tower in ("visual.transformer", "transformer"):
        for i in range(layers):
            block = f"{tower}.resblocks.{i}"
            state |= {
                f"{block}.attn.in_proj_weight": torch.randn(3 * width, width),
                f"{block}.attn.in_proj_bias": torch.randn(3 * width),
                f"{block}.attn.out_proj.weight": torch.randn(width, width),
                f"{block}.attn.out_proj.bias": torch.randn(width),
                f"{block}.mlp.c_fc.weight": torch.randn(4 * width, width),
                f"{block}.mlp.c_fc.bias": torch.randn(4 * width),
                f"{block}.mlp.c_proj.weight": torch.randn(width, 4 * width),
                f"{block}.mlp.c_proj.bias": torch.randn(width),
            }
            for norm in ("ln_1", "ln_2"):
                state |= {
                    f"{block}.{norm}.weight": torch.ones(width),
                    f"{block}.{norm}.bias": torch.zeros(width),
                }
    return state


def test_inspect_hf_directory_table(tmp_path, capsys):
    save_tiny_hf_clip(tmp_path)
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in HEADS:
        assert re.search(rf"^{re.escape(name)}\s+\(16, 32\)\s+float32\s+yes$", out, re.M), name
    # logit_scale comes from the checkpoint (HF CLIP config 2.6592 = ln(1/0.07) rounded); the two FG-CLIP ones are new (ln 100).
    assert re.search(r"^logit_scale\s+\(\)\s+float32\s+yes\s+2\.6592\s+14\.28$", out, re.M)
    assert re.search(r"^logit_scale_finegraind\s+\(\)\s+float32\s+yes\s+4\.6052\s+100\.00$", out, re.M)
    assert "(HF CLIP directory):" in out and "0 missing backbone" in out
    assert "initialised roi_projection.weight: copied from visual_projection.weight" in out


def test_inspect_openai_pt_json(tmp_path, capsys):
    path = tmp_path / "ViT-tiny.pt"
    torch.save(_openai_state_dict(), path)
    assert main(["inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in report["heads"]}
    assert list(rows) == [*HEADS, "temporal", *TEMPERATURES]
    assert (
        rows["visual_projection.weight"]["shape"] == "(32, 64)"
        and rows["roi_projection.weight"]["requires_grad"] == "yes"
    )
    assert math.isclose(rows["logit_scale"]["value"], math.log(50.0), rel_tol=1e-6)
    assert math.isclose(rows["logit_scale"]["exp"], 50.0, rel_tol=1e-6)
    load = report["load"]
    assert load["source_format"] == "OpenAI CLIP state dict"
    assert load["counts"]["missing_backbone"] == 0 and load["unexpected"] == []
    assert "split 4 fused attn.in_proj_weight/in_proj_bias tensor(s) into q/k/v" in load["notes"]
    assert "vision_model.encoder.layers.0.self_attn.q_proj.weight" in load["loaded"]


def test_inspect_refuses_a_partial_checkpoint_unless_asked(tmp_path, capsys):
    state = _openai_state_dict()
    del state["visual.ln_post.weight"]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    assert main(["inspect", str(path)]) == 1
    assert "vision_model.post_layernorm.weight" in capsys.readouterr().err
    assert main(["inspect", str(path), "--allow-partial-load"]) == 0
    assert "MISSING vision_model.post_layernorm.weight" in capsys.readouterr().out
