"""Gradient checkpointing: `FGCLIPModel.encode_frames` calls the CLIP encoder layers itself; HF's
`activation_checkpointing_enable()` must still make them recompute in backward, with unchanged gradients."""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from fgclip import builders
from fgclip.config import load_config
from fgclip.data.collate import ClipCollator
from fgclip.losses.memory_bank import MemoryBankOptions
from fgclip.losses.objective import FGCLIPObjective
from fgclip.losses.task import AlignmentTask
from fgclip.tools import training_run as run
from fgclip.training.lora import unwrap_model


def _model_and_batch(tiny_synth, train_args, tmp_path):
    argv = train_args(tiny_synth, tmp_path, "--bank.size", "0")
    config = load_config(argv[1], argv[2:])
    tokenizer = builders.build_tokenizer(config.model)
    model, _ = builders.build_model(config.model, tokenizer)
    dataset = builders.dataset_from_manifests(
        config.data, config.data.train_manifests, tokenizer, builders.model_image_size(model), train=False
    )
    batch = ClipCollator(tokenizer.pad_token_id)([dataset[i] for i in range(3)])
    return model, batch


def _gradients_and_mlp_calls(model, batch) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    layers = {
        f"{tower}.{i}": layer
        for tower in ("vision_model", "text_model")
        for i, layer in enumerate(getattr(model, tower).encoder.layers)
    }
    calls = dict.fromkeys(layers, 0)
    hooks = [
        layer.mlp.register_forward_pre_hook(lambda *_, key=key: calls.__setitem__(key, calls[key] + 1))
        for key, layer in layers.items()
    ]
    model.zero_grad()
    AlignmentTask(FGCLIPObjective({}), MemoryBankOptions(size=0))(model, batch, step=0).loss.backward()
    for hook in hooks:
        hook.remove()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, calls


def test_checkpointed_layers_recompute_and_gradients_are_unchanged(tiny_synth, train_args, tmp_path):
    model, batch = _model_and_batch(tiny_synth, train_args, tmp_path)
    model.train()
    plain_grads, plain_calls = _gradients_and_mlp_calls(model, batch)
    model.activation_checkpointing_enable()  # what the Trainer calls for train.gradient_checkpointing
    checkpointed_grads, checkpointed_calls = _gradients_and_mlp_calls(model, batch)

    # Each layer's MLP runs once more in backward (counted when it starts: torch stops a recomputation as soon
    # as it has every saved tensor, before the MLP's end). The last vision layer runs outside the layer call
    # (one pass for the CLS output and the dense value path) and is checkpointed the same way.
    assert plain_calls == {
        "vision_model.0": 1,
        "vision_model.1": 1,
        "text_model.0": 2,
    }  # text: global + region
    assert checkpointed_calls == {"vision_model.0": 2, "vision_model.1": 2, "text_model.0": 4}
    assert plain_grads.keys() == checkpointed_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


class CheckpointingSeen(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        core = unwrap_model(model)
        self.flags = [layer.gradient_checkpointing for layer in core.vision_model.encoder.layers] + [
            layer.gradient_checkpointing for layer in core.text_model.encoder.layers
        ]


def test_train_option_enables_checkpointing_also_under_lora(tiny_synth, train_args, tmp_path):
    argv = train_args(
        tiny_synth, tmp_path / "run", "--max_steps", "1", "--per_device_batch_size", "3",
        "--gradient_checkpointing", "true", "--train.lora", "{rank: 2}",
    )  # fmt: skip
    seen = CheckpointingSeen()
    outcome = run.train(load_config(argv[1], argv[2:]), callbacks=[seen])
    assert seen.flags == [True, True, True]
    assert outcome.global_step == 1
