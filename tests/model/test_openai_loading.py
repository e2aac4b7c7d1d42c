"""Loading OpenAI CLIP `.pt` checkpoints exactly, against an independent OpenAI-architecture CLIP.

The reference below is written from OpenAI's `clip/model.py` layout (seq-first residual attention blocks
around `nn.MultiheadAttention`, QuickGELU `c_fc`/`c_proj` MLPs, causal text mask, pooling at the largest
token id, `x @ proj`); it shares no code with the loader. Widths differ per tower (192 = 3 heads of 64,
128 = 2 heads) so a swapped or wrong inference changes the outputs.
"""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from fgclip import load_pretrained
from fgclip.model.loading import CheckpointError

IMAGE, PATCH, VISION_WIDTH, VISION_LAYERS = 32, 8, 192, 2
CONTEXT, VOCAB, TEXT_WIDTH, TEXT_LAYERS, EMBED = 77, 64, 128, 3, 96
SOT, EOT = VOCAB - 2, VOCAB - 1


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, attn_mask: torch.Tensor | None = None):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, 4 * width)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(4 * width, width)),
                ]
            )
        )
        self.ln_2 = nn.LayerNorm(width)
        self.attn_mask = attn_mask

    def forward(self, x):  # (L, N, W)
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=self.attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, attn_mask: torch.Tensor | None = None):
        super().__init__()
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)]
        )

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        scale = VISION_WIDTH**-0.5
        self.conv1 = nn.Conv2d(3, VISION_WIDTH, kernel_size=PATCH, stride=PATCH, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(VISION_WIDTH))
        self.positional_embedding = nn.Parameter(scale * torch.randn((IMAGE // PATCH) ** 2 + 1, VISION_WIDTH))
        self.ln_pre = nn.LayerNorm(VISION_WIDTH)
        self.transformer = Transformer(VISION_WIDTH, VISION_LAYERS, VISION_WIDTH // 64)
        self.ln_post = nn.LayerNorm(VISION_WIDTH)
        self.proj = nn.Parameter(scale * torch.randn(VISION_WIDTH, EMBED))

    def forward(self, x):
        x = self.conv1(x).flatten(2).permute(0, 2, 1)  # (N, grid^2, W)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.transformer(self.ln_pre(x).permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class OpenAICLIP(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = VisionTransformer()
        causal = torch.empty(CONTEXT, CONTEXT).fill_(float("-inf")).triu_(1)
        self.transformer = Transformer(TEXT_WIDTH, TEXT_LAYERS, TEXT_WIDTH // 64, attn_mask=causal)
        self.token_embedding = nn.Embedding(VOCAB, TEXT_WIDTH)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(CONTEXT, TEXT_WIDTH))
        self.ln_final = nn.LayerNorm(TEXT_WIDTH)
        self.text_projection = nn.Parameter(TEXT_WIDTH**-0.5 * torch.randn(TEXT_WIDTH, EMBED))
        self.logit_scale = nn.Parameter(torch.tensor(3.9))
        # The released TorchScript archives carry these scalars in their state dict.
        self.register_buffer("input_resolution", torch.tensor(IMAGE))
        self.register_buffer("context_length", torch.tensor(CONTEXT))
        self.register_buffer("vocab_size", torch.tensor(VOCAB))
        with torch.no_grad():  # non-trivial LayerNorms and biases, so a missed one shows in the outputs
            for name, parameter in self.named_parameters():
                if name.endswith(
                    ("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "ln_final.weight")
                ):
                    parameter.uniform_(0.5, 1.5)
                elif name.endswith("bias"):
                    parameter.normal_(0, 0.1)

    def encode_image(self, image):
        return self.visual(image)

    def encode_text(self, text):
        x = self.token_embedding(text) + self.positional_embedding  # (N, L, W)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image, text):
        return self.encode_image(image), self.encode_text(text)


def _tokens(rows: list[list[int]]) -> torch.Tensor:
    ids = torch.zeros(len(rows), CONTEXT, dtype=torch.long)  # OpenAI pads with 0
    for i, row in enumerate(rows):
        ids[i, : len(row) + 2] = torch.tensor([SOT, *row, EOT])
    return ids


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    return OpenAICLIP().eval()


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(1)
    return torch.randn(2, 3, IMAGE, IMAGE), _tokens([[5, 9, 12, 7], [30, 4]])


def _assert_matches(model, reference, inputs):
    pixels, ids = inputs
    model.eval()
    with torch.no_grad():
        image_ref, text_ref = reference(pixels, ids)
        image = model.get_image_features(pixels)
        text = model.get_text_features(ids)
    assert torch.allclose(image, image_ref, atol=1e-5), (image - image_ref).abs().max()
    assert torch.allclose(text, text_ref, atol=1e-5), (text - text_ref).abs().max()
    assert model.logit_scale.item() == pytest.approx(reference.logit_scale.item())


def test_plain_state_dict_loads_exactly(reference, inputs, tmp_path):
    path = tmp_path / "ViT-tiny.pt"
    torch.save(reference.state_dict(), path)
    model, report = load_pretrained(path)
    _assert_matches(model, reference, inputs)
    vision, text = model.config.vision_config, model.config.text_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (192, 2, 3)
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (128, 3, 2)
    assert (
        vision.image_size,
        vision.patch_size,
        text.max_position_embeddings,
        model.config.projection_dim,
    ) == (32, 8, 77, 96)
    assert report.source_format == "OpenAI CLIP state dict"
    assert not report.missing_backbone and not report.unexpected
    assert set(report.initialised) == {
        "roi_projection.weight",
        "text_filip_projection.weight",
        "logit_scale_finegraind",
        "logit_scale_hardneg",
        "text_model.embeddings.position_embedding_ori.weight",
        "text_model.embeddings.position_embedding_res.weight",
        *(k for k in model.state_dict() if k.startswith(("temporal.", "memory_bank."))),
    }
    assert torch.equal(model.roi_projection.weight, model.visual_projection.weight)
    assert torch.equal(model.text_filip_projection.weight, model.text_projection.weight)
    assert model.logit_scale_finegraind.item() == pytest.approx(4.6052, abs=1e-4)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:`torch.jit:DeprecationWarning")
def test_torchscript_archive_loads_exactly(reference, inputs, tmp_path):
    path = tmp_path / "ViT-tiny-jit.pt"
    traced = torch.jit.trace(reference, inputs, check_trace=False)
    torch.jit.save(traced, str(path))
    model, report = load_pretrained(path)
    _assert_matches(model, reference, inputs)
    assert report.source_format == "OpenAI CLIP TorchScript archive"
    assert any(
        "metadata entries input_resolution=32, context_length=77, vocab_size=64" in note
        for note in report.notes
    )
    assert not report.missing_backbone and not report.unexpected


def test_training_checkpoint_with_ddp_prefix_loads(reference, inputs, tmp_path):
    path = tmp_path / "epoch_3.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    model, _ = load_pretrained(path)
    _assert_matches(model, reference, inputs)


def test_bf16_checkpoint_gives_fp32_parameters(reference, tmp_path):
    path = tmp_path / "bf16.pt"
    torch.save(
        {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in reference.state_dict().items()},
        path,
    )
    model, report = load_pretrained(path)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert report.cast_to_fp32 == {"torch.bfloat16": len(report.loaded)}  # every loaded tensor was bf16
    assert "stored as torch.bfloat16 loaded into float32 parameters" in report.summary()


@pytest.mark.parametrize(
    ("dropped", "reported"),
    [
        ("ln_final.weight", ["text_model.final_layer_norm.weight"]),
        (
            "visual.transformer.resblocks.1.attn.in_proj_weight",
            [f"vision_model.encoder.layers.1.self_attn.{p}_proj.weight" for p in "qkv"],
        ),
    ],
)
def test_missing_weight_is_refused_by_name(reference, tmp_path, dropped, reported):
    state = dict(reference.state_dict())
    del state[dropped]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        load_pretrained(path)
    for key in reported:
        assert key in str(error.value)
    _, report = load_pretrained(path, allow_partial_load=True)
    assert sorted(report.missing_backbone) == sorted(reported)


def test_inconsistent_metadata_is_refused(reference, tmp_path):
    state = dict(reference.state_dict(), vocab_size=torch.tensor(49408))
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="metadata vocab_size=49408 but the shapes give 64"):
        load_pretrained(path)


def test_width_that_is_not_a_multiple_of_64_is_refused(reference, tmp_path):
    state = dict(reference.state_dict())
    state["token_embedding.weight"] = torch.zeros(VOCAB, 96)
    path = tmp_path / "odd_width.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="text width 96 is not a multiple of 64"):
        load_pretrained(path)


def test_hf_layout_file_is_refused_with_advice(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    torch.save({"text_model.embeddings.token_embedding.weight": torch.zeros(4, 4)}, path)
    with pytest.raises(CheckpointError, match="put it in a directory with its config.json"):
        load_pretrained(path)
