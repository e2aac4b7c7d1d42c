"""Optimizer param groups, the temperature clamp after each step, and gradient accumulation through the real
Trainer (loss scaled exactly once, report averaged over micro-batches)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import TrainerCallback

from fgclip.config import load_config
from fgclip.data.text import build_word_tokenizer
from fgclip.losses.memory_bank import MemoryBankOptions
from fgclip.losses.objective import FGCLIPObjective
from fgclip.losses.task import AlignmentTask
from fgclip.losses.terms import TEMPERATURES
from fgclip.model.configuration import tiny_config
from fgclip.model.modeling import FGCLIPModel
from fgclip.synthetic import synth_vocabulary
from fgclip.tools import training_run as run
from fgclip.training.trainer import FGCLIPTrainer, GroupRates, param_groups

TINY = dict(
    image_size=32, patch_size=8, vision_width=32, text_width=32, vision_layers=1, text_layers=1, heads=2
)
RATES = GroupRates(text=1e-5, vision=2e-5, heads=3e-4, temperatures=4e-3)


def _model() -> FGCLIPModel:
    tokenizer = build_word_tokenizer(synth_vocabulary())
    return FGCLIPModel(tiny_config(vocab_size=len(tokenizer), projection_dim=16, memory_bank_size=8, **TINY))


def _group_of_each_parameter(model, groups) -> dict[str, dict]:
    by_id = {}
    for group in groups:
        for parameter in group["params"]:
            assert id(parameter) not in by_id, "a parameter is in two groups"
            by_id[id(parameter)] = group
    return {name: by_id[id(p)] for name, p in model.named_parameters() if id(p) in by_id}


def test_every_trainable_parameter_is_in_exactly_one_group_with_its_rate_and_decay():
    model = _model()
    model.text_model.embeddings.token_embedding.requires_grad_(False)  # frozen: in no group
    groups = param_groups(model, RATES, weight_decay=0.1)
    placed = _group_of_each_parameter(model, groups)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert set(placed) == trainable
    expected = {
        # name: (group, decayed)
        "text_model.embeddings.position_embedding.weight": ("text", False),
        "text_model.embeddings.position_embedding_ori.weight": ("text", False),  # long-caption tables
        "text_model.embeddings.position_embedding_res.weight": ("text", False),
        "text_model.encoder.layers.0.self_attn.q_proj.weight": ("text", True),
        "text_model.encoder.layers.0.self_attn.q_proj.bias": ("text", False),
        "text_model.encoder.layers.0.layer_norm1.weight": ("text", False),
        "text_model.final_layer_norm.weight": ("text", False),
        "vision_model.embeddings.class_embedding": ("vision", False),
        "vision_model.embeddings.position_embedding.weight": ("vision", False),
        "vision_model.embeddings.patch_embedding.weight": ("vision", True),  # a linear map of patches
        "vision_model.encoder.layers.0.mlp.fc1.weight": ("vision", True),
        "vision_model.pre_layrnorm.weight": ("vision", False),
        "visual_projection.weight": ("heads", True),
        "text_projection.weight": ("heads", True),
        "roi_projection.weight": ("heads", True),
        "text_filip_projection.weight": ("heads", True),
        "temporal.position_embedding": ("heads", False),  # the temporal position table
        "temporal.encoder.layers.0.self_attn.in_proj_weight": ("heads", True),
        "temporal.encoder.layers.0.norm1.weight": ("heads", False),
        "temporal.score.bias": ("heads", False),
        "logit_scale": ("temperatures", False),
        "logit_scale_finegraind": ("temperatures", False),
        "logit_scale_hardneg": ("temperatures", False),
    }
    for name, (kind, decayed) in expected.items():
        group = placed[name]
        assert group["name"] == f"{kind}/{'decay' if decayed else 'no_decay'}", name
        assert group["lr"] == getattr(RATES, kind), name
        assert group["weight_decay"] == (0.1 if decayed else 0.0), name
    # no parameter of a norm, a bias or an embedding table is decayed, anywhere
    for name, group in placed.items():
        if name.endswith("bias") or "norm" in name or "embedding" in name and "patch" not in name:
            assert group["weight_decay"] == 0.0, name


@pytest.fixture
def train_run(tiny_synth, tmp_path, train_args):
    def _run(*overrides, callbacks=()):
        argv = train_args(tiny_synth, tmp_path / f"run{len(list(tmp_path.iterdir()))}", *overrides)
        return run.train(load_config(argv[1], argv[2:]), callbacks=list(callbacks))

    return _run


def test_temperatures_are_clamped_after_every_optimizer_step(train_run, read_rows):
    # Initialised above the ceiling (ln 100 > 3) on purpose: every forward, the first included, sees e^3 at
    # most (the forward bounds it), and the parameters are clamped after every step.
    outcome = train_run(
        "--max_steps",
        "3",
        "--per_device_batch_size",
        "3",
        "--logit_scale_max",
        "3.0",
        "--logit_scale_lr",
        "0.5",
    )
    rows = read_rows(outcome.output_dir)
    assert rows[0]["temperature/logit_scale"] == pytest.approx(math.exp(3.0), rel=1e-6)
    for row in rows:
        for name in TEMPERATURES:
            assert row[f"temperature/{name}"] <= math.exp(3.0) * (1 + 1e-6), (row["step"], name)
    assert all(float(s.detach()) <= 3.0 for s in outcome.model.logit_scales().values())


class FirstStepCapture(TrainerCallback):
    """The model's state before training and its gradients right before the first optimizer step."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.initial = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            self.grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


def test_accumulation_gives_the_gradient_of_the_mean_micro_batch_loss(train_run, read_rows, monkeypatch):
    """Batch 3 x accumulation 2, all three losses, bank off.

    The contrastive losses depend on the batch, so batch 6 x 1 is a different objective; what accumulation
    must give is the mean over micro-batches of each micro-batch's loss gradient. The reference recomputes
    exactly that by hand from the captured micro-batches and the initial weights. A loss scaled twice (by
    the trainer and by HF) gives half of it, a loss never scaled twice of it; either fails here.
    """
    micro_batches = []
    compute_loss = FGCLIPTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        micro_batches.append({k: v.clone() if torch.is_tensor(v) else v for k, v in inputs.items()})
        return compute_loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(FGCLIPTrainer, "compute_loss", recording)
    capture = FirstStepCapture()
    outcome = train_run(
        "--max_steps", "1", "--per_device_batch_size", "3", "--gradient_accumulation_steps", "2",
        "--bank.size", "0", "--max_grad_norm", "0", callbacks=[capture],
    )  # fmt: skip
    assert len(micro_batches) == 2

    reference = FGCLIPModel(outcome.model.config)
    reference.load_state_dict(capture.initial)
    reference.train()
    task = AlignmentTask(FGCLIPObjective({}), MemoryBankOptions(size=0))  # what the trainer calls
    losses = []
    for batch in micro_batches:
        loss = task(reference, batch, step=0).loss
        (loss / len(micro_batches)).backward()
        losses.append(float(loss.detach()))
    for name, parameter in reference.named_parameters():
        torch.testing.assert_close(capture.grads[name], parameter.grad, rtol=1e-5, atol=1e-8, msg=name)
    # the logged loss of the step is the mean over its micro-batches (sums and counts, no hard-coded count)
    assert read_rows(outcome.output_dir)[0]["loss"] == pytest.approx(sum(losses) / 2, rel=1e-6)


def test_batch_6_equals_batch_3_accumulated_twice_when_the_loss_decomposes(train_run):
    """With only the hard-negative loss (a mean over regions of a per-region softmax) and every clip holding
    one region with hard negatives, the loss of 6 clips is exactly the mean of the losses of its two halves,
    so one step of 6 x 1 and one step of 3 x 2 must produce the same gradient (the clips and their frame jitter
    are the same: the data path depends on (seed, epoch, index) only)."""
    gradients = []
    for batch, accumulation in ((6, 1), (3, 2)):
        capture = FirstStepCapture()
        train_run(
            "--max_steps", "1", "--per_device_batch_size", str(batch),
            "--gradient_accumulation_steps", str(accumulation), "--bank.size", "0",
            "--max_grad_norm", "0", "--loss.global_weight", "0", "--loss.region_weight", "0",
            callbacks=[capture],
        )  # fmt: skip
        gradients.append(capture.grads)
    single, accumulated = gradients
    assert single.keys() == accumulated.keys()
    assert single["roi_projection.weight"] is not None and single["text_filip_projection.weight"] is None
    for name, grad in single.items():
        if grad is None:
            assert accumulated[name] is None, name
            continue
        # Different batch shapes sum in another order: fp32 rounding of ~1e-6 of the gradient's norm. A loss
        # scaled twice or never would be off by 50% or 100%. (The floor covers gradients that are zero in
        # exact arithmetic, e.g. the attention key biases, where only rounding noise remains.)
        error = float((accumulated[name] - grad).norm())
        assert error <= 1e-5 * float(grad.norm()) + 1e-6, (
            f"{name}: |difference| {error:.3g}, |grad| {grad.norm():.3g}"
        )
