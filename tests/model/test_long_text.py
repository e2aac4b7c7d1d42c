"""FG-CLIP's long-caption positions: the 77 -> 248 table, the long text path, FG-CLIP v1 checkpoints."""

import json

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import save_tiny_hf_clip
from transformers import CLIPTextConfig, CLIPTextModel

from fgclip import FGCLIPModel, load_pretrained
from fgclip.model.configuration import tiny_config
from fgclip.model.long_text import interpolate_positions

ORI = "text_model.embeddings.position_embedding_ori.weight"
RES = "text_model.embeddings.position_embedding_res.weight"
EOS, PAD = 1, 2


def _fgclip_loop(pre: torch.Tensor, keep: int = 20) -> torch.Tensor:
    """FG-CLIP's `resize_postion_embeding`, transcribed loop for loop (the reference)."""
    length, dim = pre.shape
    new = torch.zeros(4 * length - 3 * keep, dim, dtype=pre.dtype)
    for i in range(keep):
        new[i] = pre[i]
    for i in range(length - 1 - keep):
        new[4 * i + keep] = pre[i + keep]
        new[4 * i + 1 + keep] = 3 * pre[i + keep] / 4 + 1 * pre[i + 1 + keep] / 4
        new[4 * i + 2 + keep] = 2 * pre[i + keep] / 4 + 2 * pre[i + 1 + keep] / 4
        new[4 * i + 3 + keep] = 1 * pre[i + keep] / 4 + 3 * pre[i + 1 + keep] / 4
    for j in range(4):
        new[4 * length - 3 * keep - 4 + j] = pre[length - 1] + j * (pre[length - 1] - pre[length - 2]) / 4
    return new


def test_interpolation_on_known_values():
    squares = (torch.arange(24.0) ** 2).unsqueeze(1)  # row i holds i^2
    table = interpolate_positions(squares, keep=20)[:, 0]
    assert table.shape == (4 * 24 - 3 * 20,)
    assert table[:20].tolist() == [i * i for i in range(20)]
    # gap 20^2=400 -> 21^2=441, then 441 -> 484, 484 -> 529; the tail continues with the last step (45).
    assert table[20:24].tolist() == [400.0, 410.25, 420.5, 430.75]
    assert table[28:32].tolist() == [484.0, 495.25, 506.5, 517.75]
    assert table[32:].tolist() == [529.0, 540.25, 551.5, 562.75]


def test_interpolation_of_clip_table_is_fgclips_bit_for_bit():
    torch.manual_seed(0)
    table = torch.randn(77, 16)
    long_table = interpolate_positions(table, keep=20)
    assert long_table.shape == (248, 16)
    assert torch.equal(long_table, _fgclip_loop(table))
    ramp = interpolate_positions(torch.arange(77.0).unsqueeze(1), keep=20)[:, 0]
    assert torch.equal(ramp[20:], 20 + torch.arange(228.0) / 4)  # positions 20.. advance a quarter step


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = FGCLIPModel(
        tiny_config(
            vocab_size=50,
            image_size=32,
            patch_size=8,
            vision_width=32,
            text_width=32,
            vision_layers=1,
            text_layers=2,
            heads=2,
            projection_dim=16,
            eos_token_id=EOS,
            pad_token_id=PAD,
        )
    ).eval()
    with torch.no_grad():  # distinct ori / res tables, as after FG-CLIP training
        model.text_model.embeddings.position_embedding_ori.weight.normal_()
        model.text_model.embeddings.position_embedding_res.weight.normal_()
        model.text_filip_projection.weight.normal_()
    return model


def _caption(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(length)
    ids = torch.full((2, length), PAD)
    ids[0, 0], ids[0, 1 : length - 1], ids[0, length - 1] = 0, torch.randint(4, 50, (length - 2,)), EOS
    ids[1, 0], ids[1, 1:30], ids[1, 30] = 0, torch.randint(4, 50, (29,)), EOS
    return ids, (ids != PAD).long()


def _reference_caption_features(model: FGCLIPModel, ids, mask) -> torch.Tensor:
    """HF's own CLIPTextModel with a 248-row position table = FG-CLIP's ori*mask1 + res*mask2."""
    embeddings = model.text_model.embeddings
    config = CLIPTextConfig(**{**model.config.text_config.to_dict(), "max_position_embeddings": 248})
    reference = CLIPTextModel(config).eval()
    state = {k: v for k, v in model.text_model.state_dict().items() if "position_embedding" not in k}
    keep = (torch.arange(248) < 20).unsqueeze(1)
    state["embeddings.position_embedding.weight"] = torch.where(
        keep, embeddings.position_embedding_ori.weight, embeddings.position_embedding_res.weight
    )
    reference.load_state_dict(state, strict=False)
    return model.text_filip_projection(reference(input_ids=ids, attention_mask=mask).pooler_output)


def test_global_caption_longer_than_77_uses_the_long_table(model):
    ids, mask = _caption(200)
    with torch.no_grad():
        features = model.get_caption_features(ids, mask)
        reference = _reference_caption_features(model, ids, mask)
    assert torch.allclose(features, reference, atol=1e-5), (features - reference).abs().max()


def test_region_captions_keep_the_77_table(model):
    ids, mask = _caption(60)
    ori = model.text_model.embeddings.position_embedding_ori.weight
    with torch.no_grad():
        before_text, before_caption = (
            model.get_text_features(ids, mask),
            model.get_caption_features(ids, mask),
        )
        saved = ori.clone()
        ori.add_(torch.randn_like(ori))  # (a constant shift would vanish in the LayerNorm)
        after_text, after_caption = model.get_text_features(ids, mask), model.get_caption_features(ids, mask)
        ori.copy_(saved)
    assert torch.equal(before_text, after_text)
    assert not torch.allclose(before_caption, after_caption)


def test_caption_longer_than_the_long_table_is_refused(model):
    ids, mask = _caption(249)
    with pytest.raises(ValueError, match="longer than the long position table"):
        model.get_caption_features(ids, mask)


def _save_fgclip_v1(model: FGCLIPModel, directory) -> dict[str, torch.Tensor]:
    """An FG-CLIP v1 checkpoint: HF CLIP keys + FG-CLIP's extras, no roi_projection, no temporal module."""
    state = {
        k: v.clone().to(torch.bfloat16)
        for k, v in model.state_dict().items()
        if not k.startswith(("temporal.", "roi_projection."))
    }
    save_file(state, str(directory / "model.safetensors"))
    config = model.config.to_dict()
    config.update(
        model_type="clip",
        architectures=["FGCLIPModel"],
        dtype="bfloat16",
        auto_map={"AutoModelForCausalLM": "modeling_fgclip.FGCLIPModel"},
    )
    (directory / "config.json").write_text(json.dumps(config))
    return state


def test_fgclip_v1_checkpoint_round_trip(model, tmp_path):
    with torch.no_grad():
        for name, value in (
            ("logit_scale", 3.1),
            ("logit_scale_finegraind", 3.2),
            ("logit_scale_hardneg", 3.3),
        ):
            getattr(model, name).fill_(value)
    state = _save_fgclip_v1(model, tmp_path)
    loaded, report = load_pretrained(tmp_path)
    assert report.source_format == "FG-CLIP v1 checkpoint"
    for key in (ORI, RES, "text_filip_projection.weight", "logit_scale_finegraind", "logit_scale_hardneg"):
        assert key in report.loaded and key not in report.initialised
        assert torch.equal(loaded.state_dict()[key], state[key].float()), key
    assert loaded.logit_scale_hardneg.item() == pytest.approx(3.3, abs=1e-2)  # stored in bf16
    assert report.initialised["roi_projection.weight"] == "copied from visual_projection.weight"
    assert torch.equal(loaded.roi_projection.weight, loaded.visual_projection.weight)
    assert not report.missing_backbone and not report.unexpected
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert any("declares dtype bfloat16" in note for note in report.notes)
    assert "auto_map" not in loaded.config.to_dict()  # FG-CLIP's remote code pointer is not carried along
    ids, mask = _caption(120)
    with torch.no_grad():
        assert torch.allclose(
            loaded.get_caption_features(ids, mask), _reference_caption_features(loaded, ids, mask), atol=1e-5
        )


def test_plain_clip_gets_long_tables_built_and_reported(tmp_path):
    clip = save_tiny_hf_clip(tmp_path, layers=2)
    model, report = load_pretrained(tmp_path)
    expected = interpolate_positions(clip.text_model.embeddings.position_embedding.weight.detach(), keep=20)
    for key in (ORI, RES):
        assert torch.equal(model.state_dict()[key], expected)
        assert report.initialised[key].startswith(
            "built from text_model.embeddings.position_embedding.weight"
        )
