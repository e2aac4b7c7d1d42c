"""LoRA through peft: adapters on the towers' attention and MLP projections; heads, the temporal module and
the temperatures train fully.

Under peft the model becomes `PeftModel` -> `LoraModel` -> `FGCLIPModel` (parameter names gain a
`base_model.model.` prefix and LoRA layers gain `.base_layer` / `.lora_A.default` / `.lora_B.default`).
`unwrap_model` gives back the `FGCLIPModel` (with its LoRA layers) under any wrapping, so param groups,
start-up checks and the memory bank see plain FG-CLIP names.

Saving writes two things: the merged full model (`model.safetensors`, FG-CLIP keys, each LoRA delta folded
into its base weight by peft's own `get_delta_weight`), which `FGCLIPModel.from_pretrained` loads; and
`lora_training_state.safetensors`, the unmerged trainable parameters and buffers, which exact resume needs
(merged weights cannot be split back into base + adapter bit for bit).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fgclip.config import LoraSection
from fgclip.losses.terms import FULLY_TRAINED
from fgclip.model.errors import CheckpointError

LORA_STATE_FILE = "lora_training_state.safetensors"
_TOWERS = {"text": "text_model", "vision": "vision_model"}
_PEFT_PREFIX = "base_model.model."


def is_peft_model(model) -> bool:
    peft = sys.modules.get("peft")  # nothing can be a PeftModel before peft is imported
    return peft is not None and isinstance(model, peft.PeftModel)


def unwrap_model(model):
    """The FGCLIPModel inside DDP / DeepSpeed (`.module`) and peft (`get_base_model()`) wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model.get_base_model() if is_peft_model(model) else model


def target_pattern(lora: LoraSection) -> str:
    """peft `target_modules` regex: only the towers' encoder layers (the temporal module has an out_proj too)."""
    towers = "|".join(_TOWERS[t] for t in lora.towers)
    modules = "|".join(lora.target_modules)
    return rf"^({towers})\.encoder\.layers\.\d+\.(self_attn|mlp)\.({modules})$"


def apply_lora(model, lora: LoraSection):
    """Wrap `model` with LoRA adapters; everything else frozen except the heads, temporal module, temperatures."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError("train.lora needs peft: pip install 'fgclip[lora]'") from error
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=target_pattern(lora),
        bias="none",
    )
    peft_model = get_peft_model(model, config)
    core = unwrap_model(peft_model)
    for name in FULLY_TRAINED:
        getattr(core, name).requires_grad_(True)
    return peft_model


def merged_state_dict(peft_model) -> dict[str, torch.Tensor]:
    """The FG-CLIP state dict (plain keys) with every active LoRA delta added to its base weight."""
    from peft.tuners.lora import LoraLayer

    core = unwrap_model(peft_model)
    merged: dict[str, torch.Tensor] = {}
    for name, module in core.named_modules():
        if isinstance(module, LoraLayer):
            if any(module.use_dora.get(a, False) for a in module.active_adapters):
                raise NotImplementedError(f"{name}: merging DoRA adapters is not supported")
            weight = module.get_base_layer().weight.detach()
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A)
            merged[f"{name}.weight"] = (weight + delta).to(weight.dtype)
    state = {}
    for key, value in core.state_dict().items():
        if ".lora_" in key:
            continue
        plain = key.replace(".base_layer.", ".")
        state[plain] = merged.get(plain, value.detach())
    return {key: value.contiguous() for key, value in state.items()}


def lora_training_state(peft_model) -> dict[str, torch.Tensor]:
    """Trainable parameters (adapters, heads, temperatures) and all buffers (the memory bank), unmerged."""
    core = unwrap_model(peft_model)
    trainable = {name for name, p in core.named_parameters() if p.requires_grad}
    buffers = {name for name, _ in core.named_buffers()}
    return {
        name: value.detach().contiguous()
        for name, value in core.state_dict().items()
        if name in trainable or name in buffers
    }


def save_lora_training_state(peft_model, output_dir: str | Path) -> None:
    save_file(
        lora_training_state(peft_model), str(Path(output_dir) / LORA_STATE_FILE), metadata={"format": "pt"}
    )


def load_lora_training_state(peft_model, checkpoint: str | Path) -> None:
    """Restore adapters, heads, temperatures and bank; the frozen base weights come from `model.init`."""
    path = Path(checkpoint) / LORA_STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{checkpoint}: no {LORA_STATE_FILE}; it was not saved by a LoRA run")
    state = load_file(str(path))
    expected = lora_training_state(peft_model)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match this LoRA model: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)}); were train.lora settings changed?"
        )
    core = unwrap_model(peft_model)
    with torch.no_grad():
        for name, value in core.state_dict(keep_vars=True).items():
            if name in state:
                value.copy_(state[name])
