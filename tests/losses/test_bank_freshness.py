"""Fresh text negatives (`bank.fresh_text`) and the momentum encoder (`bank.momentum`) of the memory bank.

Fresh texts are a re-encode of the stored caption ids by the current text tower, with gradient; off, the
task is exactly the stale bank. The EMA arithmetic has a known answer; at m = 0 the shadow is the online
model and the bank holds what it holds without a momentum encoder."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from test_task import _batch, _model

from fgclip.config import ConfigError, load_config
from fgclip.losses.contrastive import RegionNegatives
from fgclip.losses.memory_bank import MemoryBankOptions
from fgclip.losses.momentum import MomentumEncoder
from fgclip.losses.objective import FGCLIPObjective
from fgclip.losses.task import AlignmentTask

REGION_ONLY = {"global": 0, "region": 1, "hard_negative": 0}


def _filled(options: MemoryBankOptions, steps: int = 2):
    """A tiny model and a task whose bank holds `steps` micro-batches (4 regions each), no optimizer step."""
    model = _model()
    task = AlignmentTask(FGCLIPObjective(REGION_ONLY), options)
    task.attach_bank(model)
    for step in range(steps):
        task(model, _batch(step), step)
    return model, task


# ------------------------------------------------------------------------------------------- fresh text
def test_the_bank_stores_the_region_caption_ids_padded_to_text_length():
    model, task = _filled(MemoryBankOptions(size=16, warmup_steps=0, fresh_text=3, text_length=10))
    bank = task.bank
    assert bank.caption_ids.shape == (16, 10) and bank.caption_ids.dtype == torch.long
    for step in range(2):
        batch = _batch(step)
        valid = batch["region_valid"]
        rows = slice(4 * step, 4 * step + 4)
        assert torch.equal(bank.caption_ids[rows, :6], batch["region_caption_ids"][valid])
        assert torch.equal(bank.caption_mask[rows, :6], batch["region_caption_mask"][valid])
        assert not bank.caption_ids[rows, 6:].any() and not bank.caption_mask[rows, 6:].any()


def test_fresh_texts_are_the_newest_entries_re_encoded_with_gradient():
    model, task = _filled(MemoryBankOptions(size=16, warmup_steps=0, fresh_text=3))
    bank = task.bank
    negatives, fresh = task._read(model, bank, step=2)
    # newest first: step 1 wrote slots 4..7, the last row written (slot 7) is the newest
    assert fresh.tolist() == [7, 6, 5]
    ids, mask = bank.caption_ids[fresh], bank.caption_mask[fresh]
    direct = F.normalize(model.get_text_features(ids, mask), dim=-1)  # the full 77 columns, padding included
    torch.testing.assert_close(negatives.text_embeds[fresh], direct, atol=1e-6, rtol=0)
    # no optimizer step happened: the re-encode equals the stored embedding, so padding changes nothing
    torch.testing.assert_close(negatives.text_embeds[fresh], bank.text_embeds[fresh], atol=1e-5, rtol=0)
    stale = torch.ones(8, dtype=torch.bool)
    stale[fresh] = False
    assert torch.equal(negatives.text_embeds[stale], bank.text_embeds[:8][stale])  # untouched, detached

    negatives.text_embeds.sum().backward()
    text_grad = model.text_model.embeddings.token_embedding.weight.grad
    assert text_grad is not None and text_grad.abs().sum() > 0
    assert model.text_projection.weight.grad.abs().sum() > 0
    assert model.roi_projection.weight.grad is None  # only the text side is re-encoded


def test_fresh_text_is_reported_and_counted_as_negatives():
    model, task = _filled(MemoryBankOptions(size=16, warmup_steps=0, fresh_text=3))
    out = task(model, _batch(2), 2)
    assert out.report["memory_bank/fresh_text"] == 3
    assert out.report["memory_bank/fresh_negatives_per_query"] == 3  # captions keys of step 2 are new
    assert out.report["memory_bank/negatives_per_query"] == 8
    assert out.report["region/negatives_per_query"] == 3 + 8  # in-batch 4 - 1, plus the 8 banked


def test_fresh_text_zero_is_the_stale_bank_of_today():
    """fresh_text 0: no caption buffers, and the loss is the objective on the stored rows."""
    model, task = _filled(MemoryBankOptions(size=16, warmup_steps=0))
    bank = task.bank
    assert "caption_ids" not in bank.state_dict() and not bank.stores_text
    stored = RegionNegatives(
        bank.image_embeds[:8].clone(), bank.text_embeds[:8].clone(), bank.caption_keys[:8]
    )
    batch = _batch(2)
    losses, _ = task.objective(model(**batch), batch, region_negatives=stored)
    out = task(model, batch, 2)
    assert torch.equal(out.loss, task.objective.total(losses))
    assert "memory_bank/fresh_text" not in out.report


def test_fresh_text_changes_the_loss_only_once_the_text_tower_moved():
    def losses(fresh_text: int, lr: float) -> list[float]:
        model = _model()
        task = AlignmentTask(
            FGCLIPObjective(REGION_ONLY), MemoryBankOptions(size=16, warmup_steps=0, fresh_text=fresh_text)
        )
        task.attach_bank(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        values = []
        for step in range(4):
            loss = task(model, _batch(step), step).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            values.append(float(loss.detach()))
        return values

    torch.testing.assert_close(losses(8, lr=0.0), losses(0, lr=0.0), atol=1e-5, rtol=0)
    moved_fresh, moved_stale = losses(8, lr=0.5), losses(0, lr=0.5)
    assert moved_fresh[0] == pytest.approx(moved_stale[0], abs=1e-6)  # step 0: the bank is still empty
    # step 1 ranks against step 0's captions: stored by the tower before the update, re-encoded after it
    assert abs(moved_fresh[1] - moved_stale[1]) > 1e-4


def test_the_caption_buffers_round_trip_through_a_checkpoint(tmp_path):
    _, task = _filled(MemoryBankOptions(size=16, warmup_steps=0, fresh_text=3))
    save_file(task.bank.state_dict(), tmp_path / "bank.safetensors")
    restored = AlignmentTask(FGCLIPObjective(REGION_ONLY), MemoryBankOptions(size=16, fresh_text=3))
    restored.attach_bank(_model())
    restored.bank.load_state_dict(load_file(tmp_path / "bank.safetensors"))
    for name, value in task.bank.state_dict().items():
        assert torch.equal(restored.bank.state_dict()[name], value), name
    assert restored.bank.caption_ids.any()


def test_a_caption_longer_than_text_length_is_refused():
    model = _model()
    task = AlignmentTask(
        FGCLIPObjective(REGION_ONLY), MemoryBankOptions(size=16, fresh_text=2, text_length=4)
    )
    task.attach_bank(model)
    with pytest.raises(ValueError, match="bank.text_length is 4"):
        task(model, _batch(0), 0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("fresh_text", -1, "bank.fresh_text must be >= 0"),
        ("fresh_text", 200, r"bank.fresh_text \(200\).*<= bank.size"),
        ("text_length", 1, "bank.text_length must be >= 2"),
        ("momentum", 1.0, r"bank.momentum .* \[0, 1\)"),
    ],
)
def test_bad_options_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        MemoryBankOptions(size=128, **{field: value})


# --------------------------------------------------------------------------------------------- momentum
def test_the_ema_update_has_the_known_answer_once_per_optimizer_step():
    model = _model()
    vision = [p for n, p in model.named_parameters() if n.startswith(("vision_model.", "roi_projection."))]
    with torch.no_grad():
        for p in vision:
            p.fill_(1.0)
    encoder = MomentumEncoder(model, momentum=0.9)
    assert set(encoder.shadow()) == {
        n for n, _ in model.named_parameters() if n.startswith(("vision_model.", "roi_projection."))
    }
    with torch.no_grad():
        for p in vision:
            p.fill_(3.0)
    assert not encoder.update(model, step=0)  # no optimizer step yet: nothing to fold in
    assert encoder.update(model, step=1)  # 0.9 * 1 + 0.1 * 3
    assert not encoder.update(model, step=1)  # the next micro-batch of the same step
    for shadow in encoder.shadow().values():
        torch.testing.assert_close(shadow, torch.full_like(shadow, 1.2))
    with torch.no_grad():
        for p in vision:
            p.fill_(5.0)
    encoder.update(model, step=2)  # 0.9 * 1.2 + 0.1 * 5
    for shadow in encoder.shadow().values():
        torch.testing.assert_close(shadow, torch.full_like(shadow, 1.58))
    assert int(encoder.updated_at) == 2
    # the text tower is not shadowed
    assert not any(name.startswith("text_model.") for name in encoder.shadow())


def _train_bank(momentum, steps: int = 4):
    model = _model()
    task = AlignmentTask(
        FGCLIPObjective(REGION_ONLY), MemoryBankOptions(size=32, warmup_steps=0, momentum=momentum)
    )
    task.attach_bank(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for step in range(steps):
        loss = task(model, _batch(step), step).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return model, task.bank, losses


def test_the_momentum_encoder_writes_the_banked_image_embeddings():
    model, bank, _ = _train_bank(0.99)
    assert bank.momentum_encoder is not None and int(bank.momentum_encoder.updated_at) == 3
    assert any(k.startswith("momentum_encoder.vision_model__") for k in bank.state_dict())
    # the shadow starts as the model and folds in 1% per step: the banked rows differ from the online model's
    online = model(**_batch(3))["region_embeds"].detach()
    assert not torch.allclose(bank.image_embeds[12:16], online, atol=1e-3)
    shadow_now = bank.momentum_encoder.region_embeds(model, _batch(3))
    torch.testing.assert_close(bank.image_embeds[12:16], shadow_now)  # no update since step 3's write
    assert model.training  # the shadow forward runs in eval mode and restores the mode


def test_momentum_zero_is_the_online_encoder_and_off_is_todays_bank():
    _, off, off_losses = _train_bank(None)
    _, zero, zero_losses = _train_bank(0.0)
    assert not any(k.startswith("momentum_encoder") for k in off.state_dict())
    assert off.momentum_encoder is None
    assert zero_losses == pytest.approx(off_losses, abs=1e-6)
    torch.testing.assert_close(zero.image_embeds, off.image_embeds, atol=1e-6, rtol=0)
    assert torch.equal(zero.text_embeds, off.text_embeds)


def test_the_config_refuses_a_text_length_shorter_than_the_region_captions():
    with pytest.raises(
        ConfigError, match=r"bank.text_length \(16\) must be >= data.caption_max_length \(77\)"
    ):
        load_config(None, ["--bank.fresh_text", "8", "--bank.text_length", "16"])
    assert load_config(None, ["--bank.fresh_text", "8"]).bank.fresh_text == 8
