"""The alignment task owns the bank cycle (switch-on by optimizer step, read, loss, gathered write after the
loss); a new run never inherits a finished run's bank; a new loss term is one entry of the term table."""

import dataclasses

import pytest
import torch
from tiny_models import tiny_fgclip

from fgclip.config import loss_section_class
from fgclip.losses.label_prompts import LabelPrompts
from fgclip.losses.memory_bank import MemoryBankOptions
from fgclip.losses.objective import FGCLIPObjective
from fgclip.losses.task import AlignmentTask
from fgclip.losses.terms import LOSS_TERMS, TEMPERATURES, LossTerm, term_named
from fgclip.model.loading import load_pretrained
from fgclip.model.modeling import FGCLIPModel


def _model() -> FGCLIPModel:
    return tiny_fgclip(seed=0)


def _batch(seed: int, clips: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    T, R, K, L = 2, 2, 2, 6
    ids = torch.randint(3, 39, (clips, L), generator=g)
    ids[:, -1] = 1  # EOS of the tiny config
    region_ids = torch.randint(3, 39, (clips, R, L), generator=g)
    region_ids[..., -1] = 1
    negative_ids = torch.randint(3, 39, (clips, R, K, L), generator=g)
    negative_ids[..., -1] = 1
    return {
        "pixel_values": torch.randn(clips, T, 3, 32, 32, generator=g),
        "frame_mask": torch.ones(clips, T, dtype=torch.bool),
        "caption_ids": ids,
        "caption_mask": torch.ones_like(ids),
        "caption_keys": torch.arange(clips) + 100 * seed,
        "region_boxes": torch.tensor([0.1, 0.1, 0.6, 0.7]).expand(clips, T, R, 4).clone(),
        "region_box_mask": torch.ones(clips, T, R, dtype=torch.bool),
        "region_valid": torch.ones(clips, R, dtype=torch.bool),
        "region_caption_ids": region_ids,
        "region_caption_mask": torch.ones_like(region_ids),
        "region_labels": torch.tensor([[0, 1]] * clips),
        "region_caption_keys": torch.arange(clips * R).view(clips, R) + 1000 * seed,
        "hard_negative_ids": negative_ids,
        "hard_negative_mask": torch.ones_like(negative_ids),
    }


def test_the_bank_switches_on_at_the_warm_up_step_and_is_written_after_the_loss():
    model = _model()
    task = AlignmentTask(FGCLIPObjective({}), MemoryBankOptions(size=32, warmup_steps=2))
    bank = task.attach_bank(model)
    assert model.memory_bank is bank and not bank.is_enabled and bank.filled() == 0
    filled = []
    for step in range(4):
        before = bank.filled()
        out = task(model, _batch(step), step)
        assert bank.is_enabled == (step >= 2)
        # this micro-batch's own rows arrive after its loss: the report counts only the earlier entries
        assert out.report["memory_bank/size"] == before
        extra = out.report["region/negatives_per_query"] - (2 * 2 - 1)
        assert extra == (before if step >= 2 else 0)
        filled.append(bank.filled())
    assert filled == [4, 8, 12, 16]  # filled during the warm-up (the default), 4 regions per step
    on_by_default = {f"{t.name}_loss" for t in LOSS_TERMS if t.default_weight}
    assert out.finite and set(out.losses) == on_by_default


def test_a_non_finite_loss_writes_nothing_to_the_bank():
    model = _model()
    task = AlignmentTask(FGCLIPObjective({}), MemoryBankOptions(size=32, warmup_steps=0))
    bank = task.attach_bank(model)
    with torch.no_grad():
        model.logit_scale.fill_(float("nan"))
    out = task(model, _batch(0), 0)
    assert not out.finite and bank.filled() == 0


def test_a_new_run_from_a_saved_model_starts_with_an_empty_disabled_bank_of_its_own_size(tmp_path):
    """The defect: a run started from an fgclip checkpoint inherited the old bank, enabled at step 0 with the
    old step stamps, and another bank size failed with a shape error."""
    model = _model()
    old = AlignmentTask(FGCLIPObjective({}), MemoryBankOptions(size=32, warmup_steps=0))
    old.attach_bank(model)
    for step in range(3):
        old(model, _batch(step), step + 3000)
    assert old.bank.is_enabled and old.bank.filled() == 12
    model.save_pretrained(tmp_path)

    loaded, report = load_pretrained(tmp_path)
    assert loaded.memory_bank is None
    new = AlignmentTask(FGCLIPObjective({}), MemoryBankOptions(size=8, warmup_steps=5))
    bank = new.attach_bank(loaded)
    assert bank.capacity == 8 and bank.filled() == 0 and not bank.is_enabled
    out = new(loaded, _batch(0), 0)
    assert out.report["memory_bank/enabled"] == 0 and out.report["memory_bank/mean_age"] == 0


def test_without_a_bank_the_task_is_model_plus_objective():
    model = _model()
    task = AlignmentTask(FGCLIPObjective({}), MemoryBankOptions(size=0))
    assert task.attach_bank(model) is None and model.memory_bank is None
    batch = _batch(0)
    out = task(model, batch, 0)
    objective = FGCLIPObjective({})
    losses, _ = objective(model(**batch), batch)
    torch.testing.assert_close(out.loss, objective.total(losses))
    assert not any(name.startswith("memory_bank/") for name in out.report)


# ------------------------------------------------------------------------------------- the term table
def _mean_similarity(features, batch, _negatives):
    """A toy term: pull each clip towards its caption (1 - cosine), read at the global temperature."""
    loss = 1 - (features["clip_embeds"] * features["caption_embeds"]).sum(-1).mean()
    return loss, {"toy/mean_cosine": 1 - loss.detach()}


TOY = LossTerm(
    "toy",
    temperature="logit_scale",
    heads=("visual_projection", "text_filip_projection"),
    features=("clip_embeds", "caption_embeds"),
    compute=_mean_similarity,
    default_weight=0.5,
)


def test_a_new_loss_term_is_one_entry_of_the_table():
    terms = (*LOSS_TERMS, TOY)
    section = loss_section_class(terms)()  # the config's loss section grows a weight field
    assert section.toy_weight == 0.5 and section.region_weight == 1.0
    weights = {t.name: getattr(section, t.weight_field) for t in terms}
    objective = FGCLIPObjective(weights, terms)
    model, batch = _model(), _batch(0)
    losses, report = objective(model(**batch), batch)
    assert set(losses) == {"global_loss", "region_loss", "hard_negative_loss", "toy_loss"}
    assert report["toy/mean_cosine"] == pytest.approx(1 - float(losses["toy_loss"]))
    reference = sum(weights[t.name] * losses[t.loss_key] for t in objective.enabled)
    torch.testing.assert_close(objective.total(losses), reference)
    assert TOY.log_key == "loss/toy" and term_named("toy", terms) is TOY
    with pytest.raises(ValueError, match="unknown loss term"):
        FGCLIPObjective({"toyy": 1.0}, terms)


def test_every_term_names_real_heads_temperatures_and_features():
    model, batch = _model(), _batch(0)
    prompts = LabelPrompts(("Normal", "A"), batch["caption_ids"], batch["caption_mask"], torch.tensor([0, 1]))
    objective = FGCLIPObjective({t.name: 1.0 for t in LOSS_TERMS})
    features = AlignmentTask(objective, MemoryBankOptions(size=0), prompts)._forward(model, batch, 0)
    parameters = dict(model.named_parameters())
    modules = dict(model.named_modules())
    assert set(TEMPERATURES) == set(model.logit_scales())
    for term in LOSS_TERMS:
        assert term.temperature in parameters and term.temperature in features, term.name
        assert all(head in modules for head in term.heads), term.name
        assert all(key in features for key in term.features), term.name
    fields = {f.name for f in dataclasses.fields(loss_section_class(LOSS_TERMS))}
    options = {option.field for t in LOSS_TERMS for option in t.options}
    assert fields == {t.weight_field for t in LOSS_TERMS} | options
