"""FGCLIPModel's own modules start like the rest of CLIP (std 0.02 · initializer_factor), at real width.

HF's generic `_init_weights` draws every `nn.Linear` it does not know with std = `config.initializer_range`,
falling back to `initializer_factor` (1.0) when the config has no such field, as `CLIPConfig` does not.
These tests build the temporal module at D = 512 (CLIP ViT-B's projection width) on a tiny backbone.
"""

import pytest
import torch
from tiny_models import save_tiny_hf_clip

from fgclip import FGCLIPModel, load_pretrained
from fgclip.model.configuration import tiny_config

DIM = 512
NUM_FRAMES = 8


def _wide_temporal_model(**options) -> FGCLIPModel:
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=40, image_size=32, patch_size=8, vision_width=32, text_width=32,
        vision_layers=1, text_layers=1, heads=2, projection_dim=DIM, temporal_num_heads=8, **options,
    )  # fmt: skip
    return FGCLIPModel(config).eval()


def _temporal_linear_weights(model: FGCLIPModel) -> dict[str, torch.Tensor]:
    return {
        name: param
        for name, param in model.temporal.encoder.named_parameters()
        if name.endswith("weight") and param.dim() == 2  # in_proj, out_proj, linear1, linear2
    }


@pytest.fixture(scope="module")
def wide():
    return _wide_temporal_model()


def test_temporal_linear_weights_start_at_clip_std(wide):
    weights = _temporal_linear_weights(wide)
    assert len(weights) == 4
    for name, weight in weights.items():
        assert weight.std().item() == pytest.approx(0.02, rel=0.05), name
        assert weight.mean().abs().item() < 1e-3, name


def test_temporal_std_follows_initializer_factor():
    model = _wide_temporal_model(initializer_factor=0.5)
    for name, weight in _temporal_linear_weights(model).items():
        assert weight.std().item() == pytest.approx(0.01, rel=0.05), name


def test_temporal_biases_zero_score_head_zero_norms_identity(wide):
    for name, param in wide.temporal.named_parameters():
        if name.endswith("bias") or name.startswith(("score.", "position_embedding")):
            assert torch.count_nonzero(param) == 0, name
        elif "norm" in name:
            assert torch.equal(param, torch.ones_like(param)), name


def test_context_of_unit_frames_has_unit_scale_norm(wide):
    """8 unit-norm frames: the context the score head reads is O(1) (it was ~11,700 at N(0, 1))."""
    torch.manual_seed(1)
    frames = torch.nn.functional.normalize(torch.randn(4, NUM_FRAMES, DIM), dim=-1)  # (B, T, D)
    mask = torch.ones(4, NUM_FRAMES, dtype=torch.bool)
    temporal = wide.temporal
    with torch.no_grad():
        context = temporal.encoder(
            frames + temporal.position_embedding[:NUM_FRAMES], src_key_padding_mask=~mask
        )
    norms = context.norm(dim=-1)  # (B, T)
    assert 0.5 < norms.min().item() and norms.max().item() < 10.0


def test_few_adamw_steps_do_not_collapse_pooling_onto_one_frame(wide):
    """After 10 AdamW steps at lr 1e-4 the pooling weights stay spread (one frame took 0.875 at N(0, 1))."""
    torch.manual_seed(2)
    temporal = _wide_temporal_model().temporal.train()
    optimizer = torch.optim.AdamW(temporal.parameters(), lr=1e-4)
    frames = torch.nn.functional.normalize(torch.randn(4, NUM_FRAMES, DIM), dim=-1)  # (B, T, D)
    target = torch.nn.functional.normalize(torch.randn(4, DIM), dim=-1)  # (B, D)
    mask = torch.ones(4, NUM_FRAMES, dtype=torch.bool)
    for _ in range(10):
        loss = -(temporal(frames, mask) * target).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        context = temporal.encoder(
            frames + temporal.position_embedding[:NUM_FRAMES], src_key_padding_mask=~mask
        )
        weights = temporal.score(context).squeeze(-1).softmax(-1)  # (B, T)
    assert weights.max().item() < 0.5


def test_saved_temporal_weights_survive_loading(wide, tmp_path):
    """A checkpoint's temporal weights are loaded as stored, not re-initialised."""
    with torch.no_grad():
        for param in wide.temporal.parameters():
            param.copy_(torch.linspace(-1.0, 1.0, param.numel()).view_as(param))
    wide.save_pretrained(tmp_path)
    for model in (load_pretrained(tmp_path)[0], FGCLIPModel.from_pretrained(tmp_path)):
        for name, param in wide.temporal.state_dict().items():
            assert torch.equal(model.temporal.state_dict()[name], param), name


def test_plain_clip_checkpoint_gets_a_fresh_temporal_module_at_clip_std(tmp_path):
    save_tiny_hf_clip(tmp_path)
    model, report = load_pretrained(tmp_path)
    assert any(key.startswith("temporal.") for key in report.initialised)
    for name, weight in _temporal_linear_weights(model).items():
        assert weight.std().item() < 0.1, name  # 16-wide: few samples, so a loose bound; N(0, 1) gives ~1
