"""OpenAI CLIP checkpoints (`ViT-B-32.pt` etc.): read, infer the architecture from shapes, convert to HF keys.

Reading runs no checkpoint code: a TorchScript archive's tensors are read by a restricted unpickler that
never compiles or calls the archive's code (`torchscript_archive`); anything else goes through
`torch.load(weights_only=True)` or safetensors.

The architecture is inferred the way OpenAI's own `clip.model.build_model` does, and every inferred number
is checked against a second tensor that must agree with it (see `infer_architecture`). The conversion
accounts for every source key: each is mapped, or it is reported as unexpected.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from fgclip.model.configuration import FGCLIPConfig
from fgclip.model.errors import CheckpointError
from fgclip.model.long_text import KEEP_POSITIONS, long_table_length
from fgclip.model.torchscript_archive import is_torchscript_archive, read_torchscript_state_dict

HEAD_WIDTH = 64  # OpenAI CLIP: heads = width // 64, in both towers
# Scalars some OpenAI TorchScript archives keep in their state dict; checked against the shapes, then dropped.
METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")
# Keys whose shapes define the architecture; without them nothing can be inferred.
SHAPE_KEYS = (
    "visual.conv1.weight",
    "visual.positional_embedding",
    "visual.proj",
    "token_embedding.weight",
    "positional_embedding",
    "text_projection",
)
_DIRECT = {
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
# OpenAI applies these as `x @ P` with P (width, embed_dim); an HF Linear holds P.T.
_TRANSPOSED = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
_TOWERS = {
    "visual.transformer.resblocks.": "vision_model.encoder.layers.",
    "transformer.resblocks.": "text_model.encoder.layers.",
}
_BLOCK = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
# nn.MultiheadAttention stacks q, k, v (in that order) in one (3W, W) matrix and one (3W,) bias.
_FUSED = {"attn.in_proj_weight": "weight", "attn.in_proj_bias": "bias"}


@dataclass(frozen=True)
class OpenAIArchitecture:
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_mlp_width: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_mlp_width: int
    embed_dim: int

    @property
    def vision_heads(self) -> int:
        return self.vision_width // HEAD_WIDTH

    @property
    def text_heads(self) -> int:
        return self.text_width // HEAD_WIDTH

    def describe(self) -> str:
        return (
            f"inferred ViT: image {self.image_size}, patch {self.patch_size}, vision width {self.vision_width} x "
            f"{self.vision_layers} layers x {self.vision_heads} heads (mlp {self.vision_mlp_width}); text width "
            f"{self.text_width} x {self.text_layers} layers x {self.text_heads} heads (mlp {self.text_mlp_width}), "
            f"context {self.context_length}, vocab {self.vocab_size}; embed dim {self.embed_dim}; heads = width // 64"
        )

    def to_config(self, **options) -> FGCLIPConfig:
        """An FGCLIPConfig for this architecture. OpenAI's EOT and SOT are the last two vocabulary entries
        (49407, 49406), so pooling at the first EOS equals OpenAI's pooling at the largest token id."""
        eos, bos = self.vocab_size - 1, self.vocab_size - 2
        keep = options.setdefault("long_text_keep_positions", KEEP_POSITIONS)
        options.setdefault("long_text_max_positions", long_table_length(self.context_length, keep))
        return FGCLIPConfig(
            vision_config=dict(
                image_size=self.image_size,
                patch_size=self.patch_size,
                hidden_size=self.vision_width,
                intermediate_size=self.vision_mlp_width,
                num_hidden_layers=self.vision_layers,
                num_attention_heads=self.vision_heads,
                projection_dim=self.embed_dim,
                hidden_act="quick_gelu",
                layer_norm_eps=1e-5,
            ),
            text_config=dict(
                vocab_size=self.vocab_size,
                hidden_size=self.text_width,
                intermediate_size=self.text_mlp_width,
                num_hidden_layers=self.text_layers,
                num_attention_heads=self.text_heads,
                max_position_embeddings=self.context_length,
                projection_dim=self.embed_dim,
                hidden_act="quick_gelu",
                layer_norm_eps=1e-5,
                bos_token_id=bos,
                eos_token_id=eos,
                pad_token_id=eos,
            ),
            projection_dim=self.embed_dim,
            **options,
        )


def read_checkpoint_file(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, format) of a single-file checkpoint; no pickled code is ever run."""
    if path.suffix == ".safetensors":
        return load_file(str(path)), "safetensors file"
    if is_torchscript_archive(path):
        return read_torchscript_state_dict(path), "TorchScript archive"
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise CheckpointError(
            f"{path}: cannot be read as a TorchScript archive, a safetensors file or a weights-only torch file "
            f"({error}). Nothing else is tried: unpickling arbitrary objects could run code."
        ) from error
    return _state_dict_of(loaded, path), "state dict"


def is_openai_layout(state: dict[str, torch.Tensor]) -> bool:
    return "visual.conv1.weight" in state or "token_embedding.weight" in state


def infer_architecture(state: dict[str, torch.Tensor], source: str) -> OpenAIArchitecture:
    """Read the architecture off the tensor shapes, checking each number against a second tensor.

    widths: conv1 out channels (vision) and token_embedding columns (text), each checked against the
    positional embedding, the first LayerNorm and the projection; layers: the distinct resblock indices,
    which must be 0..n-1; heads: width // 64 (OpenAI's rule; the fused attention weights do not carry
    it), so a width that is not a multiple of 64 is refused; patch: conv1 kernel (square); image size:
    patch x grid, the grid from the vision positional embedding (1 + grid^2 rows); context and vocab: the
    text positional / token embedding rows; embed dim: the projections' columns, which must agree;
    MLP width: c_fc rows of block 0 of each tower. TorchScript metadata scalars must agree as well.
    """
    if "visual.layer1.0.conv1.weight" in state:
        raise CheckpointError(
            f"{source}: a ResNet CLIP (RN50...); only ViT CLIPs map onto HF CLIPVisionModel"
        )
    absent = [k for k in SHAPE_KEYS if k not in state]
    if absent:
        raise CheckpointError(f"{source}: not an OpenAI ViT CLIP state dict; missing {absent}")
    problems: list[str] = []
    conv = state["visual.conv1.weight"]
    vision_width, _, patch, patch_w = conv.shape
    if patch != patch_w:
        problems.append(f"visual.conv1.weight {tuple(conv.shape)}: non-square patch")
    vision_positions = state["visual.positional_embedding"].shape[0] - 1
    grid = round(vision_positions**0.5)
    if grid * grid != vision_positions:
        problems.append(f"visual.positional_embedding has {vision_positions} patch rows, not a square grid")
    vocab_size, text_width = state["token_embedding.weight"].shape
    context_length = state["positional_embedding"].shape[0]
    embed_dim = state["text_projection"].shape[1]
    arch = OpenAIArchitecture(
        image_size=patch * grid,
        patch_size=patch,
        vision_width=vision_width,
        vision_layers=_count_layers(state, "visual.transformer.resblocks.", source),
        vision_mlp_width=_mlp_width(state, "visual.transformer.resblocks.", source),
        context_length=context_length,
        vocab_size=vocab_size,
        text_width=text_width,
        text_layers=_count_layers(state, "transformer.resblocks.", source),
        text_mlp_width=_mlp_width(state, "transformer.resblocks.", source),
        embed_dim=embed_dim,
    )
    problems += _shape_problems(state, arch) + _metadata_problems(state, arch)
    if problems:
        raise CheckpointError(f"{source}: inconsistent OpenAI CLIP shapes:\n  " + "\n  ".join(problems))
    return arch


def convert_state_dict(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """OpenAI keys -> HF CLIP keys. Returns (converted, unexpected source keys, notes)."""
    converted: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    fused = transposed = 0
    for key, tensor in state.items():
        if key in METADATA_KEYS:
            continue
        if key in _DIRECT:
            converted[_DIRECT[key]] = tensor
        elif key in _TRANSPOSED:
            converted[_TRANSPOSED[key]] = tensor.t().contiguous()
            transposed += 1
        elif (block := _block_key(key)) is not None:
            prefix, suffix = block
            if suffix in _BLOCK:
                converted[prefix + _BLOCK[suffix]] = tensor
            elif suffix in _FUSED:
                for name, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
                    converted[f"{prefix}self_attn.{name}.{_FUSED[suffix]}"] = part.contiguous()
                fused += 1
            else:
                unexpected.append(key)
        else:
            unexpected.append(key)
    notes = [
        f"split {fused} fused attn.in_proj_weight/in_proj_bias tensor(s) into q/k/v",
        f"transposed {transposed} projection(s) (OpenAI x @ P) into Linear weights",
    ]
    present = [k for k in METADATA_KEYS if k in state]
    if present:
        notes.append("checked metadata entries " + ", ".join(f"{k}={int(state[k])}" for k in present))
    return converted, sorted(unexpected), notes


def _block_key(key: str) -> tuple[str, str] | None:
    """'visual.transformer.resblocks.3.ln_1.weight' -> ('vision_model.encoder.layers.3.', 'ln_1.weight')."""
    for source, target in _TOWERS.items():
        match = re.fullmatch(re.escape(source) + r"(\d+)\.(.+)", key)
        if match:
            return f"{target}{match.group(1)}.", match.group(2)
    return None


def _count_layers(state: dict, prefix: str, source: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if not indices:
        raise CheckpointError(f"{source}: no {prefix}N.* keys: no transformer blocks to load")
    if indices != set(range(len(indices))):
        raise CheckpointError(f"{source}: {prefix}N indices are not 0..{len(indices) - 1}: {sorted(indices)}")
    return len(indices)


def _mlp_width(state: dict, prefix: str, source: str) -> int:
    key = f"{prefix}0.mlp.c_fc.weight"
    if key not in state:
        raise CheckpointError(f"{source}: {key} is missing; the MLP width cannot be inferred")
    return state[key].shape[0]


def _shape_problems(state: dict, arch: OpenAIArchitecture) -> list[str]:
    expected = {
        "visual.positional_embedding": (1 + (arch.image_size // arch.patch_size) ** 2, arch.vision_width),
        "visual.class_embedding": (arch.vision_width,),
        "visual.ln_pre.weight": (arch.vision_width,),
        "visual.proj": (arch.vision_width, arch.embed_dim),
        "positional_embedding": (arch.context_length, arch.text_width),
        "ln_final.weight": (arch.text_width,),
        "text_projection": (arch.text_width, arch.embed_dim),
        "visual.transformer.resblocks.0.attn.in_proj_weight": (3 * arch.vision_width, arch.vision_width),
        "transformer.resblocks.0.attn.in_proj_weight": (3 * arch.text_width, arch.text_width),
        "visual.transformer.resblocks.0.mlp.c_fc.weight": (arch.vision_mlp_width, arch.vision_width),
        "transformer.resblocks.0.mlp.c_fc.weight": (arch.text_mlp_width, arch.text_width),
    }
    problems = [
        f"{key}: shape {tuple(state[key].shape)}, expected {shape}"
        for key, shape in expected.items()
        if key in state and tuple(state[key].shape) != shape
    ]
    for tower, width in (("vision", arch.vision_width), ("text", arch.text_width)):
        if width % HEAD_WIDTH:
            problems.append(
                f"{tower} width {width} is not a multiple of {HEAD_WIDTH}: OpenAI CLIP has width // 64 heads, "
                "and the head count cannot be read from the fused attention weights"
            )
    return problems


def _metadata_problems(state: dict, arch: OpenAIArchitecture) -> list[str]:
    inferred = {
        "input_resolution": arch.image_size,
        "context_length": arch.context_length,
        "vocab_size": arch.vocab_size,
    }
    return [
        f"metadata {key}={int(state[key])} but the shapes give {inferred[key]}"
        for key in METADATA_KEYS
        if key in state and int(state[key]) != inferred[key]
    ]


def _state_dict_of(loaded, path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict, or one under 'state_dict' (training checkpoints); a DDP 'module.' prefix is removed."""
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    not_tensors = [k for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: entries that are not tensors: {not_tensors[:10]}")
    if loaded and all(k.startswith("module.") for k in loaded):
        loaded = {k.removeprefix("module."): v for k, v in loaded.items()}
    return loaded
