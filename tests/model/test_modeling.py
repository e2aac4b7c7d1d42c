"""FGCLIPModel: public API, features, save/load round trip, loading a plain HF CLIP directory exactly."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import save_tiny_hf_clip

from fgclip import FGCLIPConfig, FGCLIPModel, load_pretrained
from fgclip.model.configuration import tiny_config
from fgclip.model.loading import CheckpointError
from fgclip.model.regions import pool_region_features


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return FGCLIPModel(
        tiny_config(
            vocab_size=40,
            image_size=32,
            patch_size=8,
            vision_width=32,
            text_width=32,
            vision_layers=2,
            text_layers=2,
            heads=2,
            projection_dim=16,
        )
    ).eval()


def test_default_model_is_vit_b_32_and_keeps_hf_feature_api():
    model = FGCLIPModel(FGCLIPConfig()).eval()
    with torch.no_grad():
        image = model.get_image_features(torch.randn(2, 3, 224, 224))
        text = model.get_text_features(torch.tensor([[49406, 320, 1929, 49407]]))
    assert image.shape == (2, 512) and text.shape == (1, 512)
    assert model.logit_scale.item() == pytest.approx(4.6052, abs=1e-4)
    assert torch.equal(model.roi_projection.weight, model.visual_projection.weight)
    assert torch.equal(model.text_filip_projection.weight, model.text_projection.weight)


def test_forward_packs_only_valid_regions(tiny):
    frame_mask = torch.tensor([[True, True], [True, False]])
    boxes = torch.tensor([0.0, 0.0, 0.5, 0.5]).expand(2, 2, 2, 4).clone()
    box_mask = torch.tensor([[[True, False], [True, True]], [[False, True], [False, False]]])
    valid = torch.tensor([[True, True], [False, True]])
    features = tiny(
        pixel_values=torch.randn(2, 2, 3, 32, 32),
        frame_mask=frame_mask,
        region_boxes=boxes,
        region_box_mask=box_mask,
        region_valid=valid,
    )
    assert features["clip_embeds"].shape == (2, 16)
    assert features["region_embeds"].shape == (3, 16)
    assert torch.allclose(features["region_embeds"].norm(dim=-1), torch.ones(3))


def test_single_frame_clip_is_its_frame_embedding(tiny):
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        frames = tiny.frame_embeddings(pixels)
        clips = tiny.clip_embeddings(frames.unsqueeze(1), torch.ones(3, 1, dtype=torch.bool))
    assert torch.allclose(clips, frames, atol=1e-6)


def test_whole_grid_box_pools_the_mean_of_dense_features(tiny):
    _, dense = tiny.encode_frames(torch.randn(1, 3, 32, 32))
    pooled = pool_region_features(
        dense,
        torch.tensor([[0]]),
        torch.tensor([[[[0.0, 0.0, 1.0, 1.0]]]]),
        torch.tensor([[[True]]]),
        torch.tensor([[True]]),
    )
    assert torch.allclose(pooled[0], dense[0].mean(dim=(1, 2)), atol=1e-5)


def test_dense_features_use_the_value_path_of_the_last_layer(tiny):
    pixels = torch.randn(2, 3, 32, 32)
    pooled, dense = tiny.encode_frames(pixels)
    out = tiny.vision_model(pixel_values=pixels, output_hidden_states=True)
    assert torch.allclose(pooled, out.pooler_output, atol=1e-5)  # CLS: the last layer as HF runs it
    assert dense.shape == (2, 32, 4, 4)
    # Patch tokens: the last layer with attention replaced by its value path, x + out(v(ln1(x))), then the MLP.
    last, x = tiny.vision_model.encoder.layers[-1], out.hidden_states[-2]  # (2, 17, 32)
    x = x + last.self_attn.out_proj(last.self_attn.v_proj(last.layer_norm1(x)))
    x = x + last.mlp(last.layer_norm2(x))
    reference = tiny.vision_model.post_layernorm(x[:, 1:]).transpose(1, 2).reshape(2, 32, 4, 4)
    assert torch.allclose(dense, reference, atol=1e-5)


def test_save_pretrained_round_trip(tiny, tmp_path):
    with torch.no_grad():
        tiny.logit_scale_hardneg.fill_(3.0)
    tiny.save_pretrained(tmp_path)
    loaded = FGCLIPModel.from_pretrained(tmp_path).eval()
    for key, value in tiny.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert loaded.config.temporal_num_layers == tiny.config.temporal_num_layers
    assert loaded.memory_bank is None  # a bank belongs to a training run, not to the model


def test_load_plain_hf_clip_directory_exactly(tmp_path):
    clip = save_tiny_hf_clip(tmp_path, layers=2)
    model, report = load_pretrained(tmp_path)
    model.eval()
    pixels, ids = torch.randn(2, 3, 32, 32), torch.tensor([[0, 5, 6, 1]])
    with torch.no_grad():
        assert torch.allclose(
            model.get_image_features(pixels), clip.get_image_features(pixels).pooler_output, atol=1e-5
        )
        assert torch.allclose(
            model.get_text_features(ids), clip.get_text_features(ids).pooler_output, atol=1e-5
        )
    assert torch.equal(model.roi_projection.weight, clip.visual_projection.weight)
    assert report.initialised["roi_projection.weight"] == "copied from visual_projection.weight"
    assert not report.missing_backbone and not report.unexpected


def test_missing_backbone_weight_is_refused(tmp_path):
    save_tiny_hf_clip(tmp_path, layers=2)
    weights = tmp_path / "model.safetensors"
    state = load_file(weights)
    del state["text_model.final_layer_norm.weight"]
    save_file(state, weights)
    with pytest.raises(CheckpointError, match="text_model.final_layer_norm.weight"):
        load_pretrained(tmp_path)
    _, report = load_pretrained(tmp_path, allow_partial_load=True)
    assert report.missing_backbone == ["text_model.final_layer_norm.weight"]


@pytest.mark.parametrize("offset", [1.5, 0.0, -0.7])
def test_forward_temperatures_are_bounded_by_the_ceiling(offset):
    """exp(min(log-scale, max)): above the ceiling exactly the ceiling's multiplier and no gradient; at and
    below it bit-equal to plain exp, value and gradient."""
    model = FGCLIPModel(tiny_config(vocab_size=40, image_size=32, patch_size=8, vision_width=32,
                                    text_width=32, vision_layers=1, text_layers=1, heads=2,
                                    projection_dim=16))  # fmt: skip
    ceiling = model.config.logit_scale_max
    scales = model.logit_scales()
    with torch.no_grad():
        for k, scale in enumerate(scales.values()):
            scale.fill_(ceiling + offset * (k + 1) / 3)  # three different values on the same side
    features = model(pixel_values=torch.randn(1, 1, 3, 32, 32), frame_mask=torch.ones(1, 1, dtype=torch.bool))
    sum(3.0 * features[name] for name in scales).backward()
    for name, scale in scales.items():
        if offset > 0:
            assert features[name].item() > 0 and torch.equal(features[name], torch.tensor(ceiling).exp())
            assert scale.item() > ceiling and scale.grad.item() == 0.0
        else:
            plain = scale.detach().clone().requires_grad_(True)
            (3.0 * plain.exp()).backward()
            assert torch.equal(features[name], plain.exp()) and torch.equal(scale.grad, plain.grad)
            assert scale.grad.item() != 0.0


@pytest.mark.parametrize("stop", [False, True])
def test_region_stop_gradient_leaves_the_towers_to_the_clip_level_terms(stop):
    """`region_stop_gradient`: region and hard-negative features reach only their heads (roi_projection,
    text_projection); the same features, and with the option off the towers learn from them too."""
    config = tiny_config(vocab_size=40, image_size=32, patch_size=8, vision_width=32, text_width=32,
                         vision_layers=1, text_layers=1, heads=2, projection_dim=16)  # fmt: skip
    config.region_stop_gradient = stop
    torch.manual_seed(0)
    model = FGCLIPModel(config)
    ids = torch.randint(3, 39, (2, 2, 6))
    ids[..., -1] = 1
    features = model(
        pixel_values=torch.randn(2, 2, 3, 32, 32),
        frame_mask=torch.ones(2, 2, dtype=torch.bool),
        region_boxes=torch.tensor([0.1, 0.1, 0.6, 0.6]).expand(2, 2, 2, 4).clone(),
        region_box_mask=torch.ones(2, 2, 2, dtype=torch.bool),
        region_valid=torch.ones(2, 2, dtype=torch.bool),
        region_caption_ids=ids,
        region_caption_mask=torch.ones_like(ids),
    )
    (features["region_embeds"] * features["region_text_embeds"]).sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    heads = ("roi_projection.weight", "text_projection.weight")
    assert all(grads[name] is not None and grads[name].abs().sum() > 0 for name in heads)
    towers = [name for name in grads if name.startswith(("vision_model.", "text_model."))]
    touched = [name for name in towers if grads[name] is not None and grads[name].abs().sum() > 0]
    assert (touched == []) == stop, touched[:3]
