"""The video-label loss (DESIGN §5): a known answer on hand-made features, the unknown-class target, the
prompt draw per step, and that it trains the anomaly direction of a tiny model through the alignment task."""

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from test_task import _batch
from tiny_models import tiny_fgclip

from fgclip.data.batch import BatchContractError, validate_batch
from fgclip.data.classes import clip_class_index
from fgclip.losses.contrastive import video_label_loss
from fgclip.losses.label_prompts import LabelPrompts
from fgclip.losses.memory_bank import MemoryBankOptions
from fgclip.losses.objective import FGCLIPObjective
from fgclip.losses.task import AlignmentTask


def test_known_answer_on_hand_made_features():
    # Three prompts: normal (e0), class 1 (e1), class 2 (e2); clips along e0 and e1 at scale 2.
    prompts = torch.eye(3)  # (P, D)
    prompt_classes = torch.tensor([0, 1, 2])
    clips = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    classes = torch.tensor([0, 2, -1])  # normal; class 2 (wrong direction); abnormal of unknown class
    loss, report = video_label_loss(clips, prompts, prompt_classes, classes, torch.tensor(2.0))
    z = math.log(math.exp(2) + 2)  # logsumexp of (2, 0, 0)
    expected = [z - 2, z - 0, z - math.log(math.exp(0) + math.exp(2))]  # unknown: classes 1 and 2 together
    assert loss.item() == pytest.approx(sum(expected) / 3, rel=1e-6)
    probability = sum(math.exp(-e) for e in expected) / 3
    assert report["video_label/target_probability"].item() == pytest.approx(probability, rel=1e-6)


def test_class_mass_is_summed_over_a_class_s_prompts():
    prompts = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1)
    prompt_classes = torch.tensor([0, 1, 1])
    clip = F.normalize(torch.tensor([[0.3, 1.0]]), dim=-1)
    logits = 3.0 * clip @ prompts.T  # (1, 3)
    expected = -(logits.softmax(-1)[0, 1:].sum().log())
    loss, _ = video_label_loss(clip, prompts, prompt_classes, torch.tensor([1]), torch.tensor(3.0))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_clip_class_without_prompts_is_refused():
    with pytest.raises(ValueError, match="clip class 3 has no prompt"):
        video_label_loss(
            torch.eye(2), torch.eye(2), torch.tensor([0, 1]), torch.tensor([0, 3]), torch.tensor(1.0)
        )


def test_prompt_draw_depends_on_the_step_only():
    ids = torch.arange(12).view(6, 2)
    prompts = LabelPrompts(("Normal", "A"), ids, torch.ones_like(ids), torch.tensor([0, 0, 0, 1, 1, 1]), 2)
    first, _, classes = prompts.for_step(5)
    assert torch.equal(first, prompts.for_step(5)[0]) and classes.tolist() == [0, 0, 1, 1]
    draws = {tuple(prompts.for_step(s)[0][:, 0].tolist()) for s in range(20)}
    assert len(draws) > 1  # the draw changes from step to step
    with pytest.raises(ValueError, match=r"class\(es\) \['A'\] have no prompt"):
        LabelPrompts(("Normal", "A"), ids, torch.ones_like(ids), torch.zeros(6, dtype=torch.long))


def test_the_batch_contract_refuses_a_class_that_contradicts_the_label():
    batch = _batch(0)
    batch.update(
        clip_labels=torch.tensor([0, 1]),
        clip_classes=torch.tensor([1, 2]),
        dropped_regions=torch.zeros(2, dtype=torch.long),
        sample_ids=["a", "b"],
    )
    with pytest.raises(BatchContractError, match="'a': clip_classes 1 contradicts clip_labels 0"):
        validate_batch(batch)
    batch["clip_classes"] = torch.tensor([0, -1])
    validate_batch(batch)


def test_the_task_refuses_the_term_without_a_prompt_set():
    with pytest.raises(ValueError, match="need a label prompt set"):
        AlignmentTask(FGCLIPObjective({"video_label": 1.0}), MemoryBankOptions(size=0))


def _toy_batch(generator: torch.Generator, clips: int) -> dict:
    """Half normal clips (noise), half abnormal (a bright square at a random place); global captions random."""
    batch = _batch(int(torch.randint(0, 10_000, (), generator=generator)), clips)
    labels = torch.arange(clips) % 2  # (B,)
    pixels = torch.randn(clips, 2, 3, 32, 32, generator=generator) * 0.5
    for b in labels.nonzero().squeeze(1).tolist():
        y, x = torch.randint(0, 20, (2,), generator=generator).tolist()
        pixels[b, :, :, y : y + 12, x : x + 12] = 2.0
    batch.update(pixel_values=pixels, clip_labels=labels, clip_classes=labels)
    return batch


def _anomaly_auc(model, prompts: LabelPrompts, batch: dict) -> float:
    with torch.no_grad():
        features = model(**batch, label_prompt_ids=prompts.ids, label_prompt_mask=prompts.mask)
        logits = features["clip_embeds"] @ features["label_prompt_embeds"].T  # (B, P)
        anomaly = logits.softmax(-1)[:, prompts.prompt_classes > 0].sum(-1)  # (B,)
    return roc_auc_score(batch["clip_labels"].numpy(), anomaly.numpy())


def test_it_trains_the_anomaly_direction_of_a_tiny_model():
    """Only the video-label term: a tiny model learns to score bright-square clips as anomalies (held-out
    AUC from chance to ~1), so the term reaches the clip embedding through the real task and forward."""
    torch.manual_seed(0)
    model = tiny_fgclip(seed=0)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 39, (4, 5), generator=g)
    ids[:, -1] = 1  # EOS
    prompts = LabelPrompts(("Normal", "Bright"), ids, torch.ones_like(ids), torch.tensor([0, 0, 1, 1]))
    task = AlignmentTask(FGCLIPObjective({"global": 0, "region": 0, "hard_negative": 0, "video_label": 1}),
                         MemoryBankOptions(size=0), prompts)  # fmt: skip
    held_out = _toy_batch(torch.Generator().manual_seed(99), 32)
    before = _anomaly_auc(model.eval(), prompts, held_out)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    losses = []
    for step in range(40):
        out = task(model, _toy_batch(g, 8), step)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.losses["video_label_loss"].item())
    after = _anomaly_auc(model.eval(), prompts, held_out)
    assert set(out.losses) == {"video_label_loss"}
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses
    assert after > 0.95 and after > before + 0.2, (before, after)


def test_a_real_training_run_with_the_term_on_the_synthetic_benchmark(
    tiny_synth, tmp_path, train_args, read_rows
):
    """`fgclip train` with `loss.video_label_weight`: every abnormal synthetic clip gets its event class from
    its video folder, and the term is trained and logged."""
    from fgclip import builders
    from fgclip.commands import train as run
    from fgclip.config import load_config

    out = tmp_path / "run"
    argv = train_args(
        tiny_synth, out, "--max_steps", "2", "--per_device_batch_size", "4", "--loss.video_label_weight", "0.5",
        "--eval.prompts", str(tiny_synth / "prompts.json"), "--loss.video_label_prompts_per_class", "3",
    )  # fmt: skip
    config = load_config(argv[1], argv[2:])
    classes = builders.label_classes(config)
    assert classes == ("Normal", "Flashing", "Growing", "Shattering")
    clips = builders.read_clips(config.data, config.data.train_manifests)
    indices = {clip.video_key: clip_class_index(clip, classes) for clip in clips}
    for clip in clips:
        expected = classes.index(clip.video.parent.name) if clip.is_abnormal else 0
        assert indices[clip.video_key] == expected, clip.video_key
    run.train(config)
    rows = read_rows(out)
    assert len(rows) == 2 and all(r["loss/video_label"] > 0 for r in rows)
    assert all(0 < r["video_label/target_probability"] < 1 for r in rows)


def test_the_config_refuses_the_term_without_a_prompt_set():
    from fgclip.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="loss.video_label_weight=0.5 needs a label prompt set"):
        load_config(None, ["--loss.video_label_weight", "0.5"])
    assert load_config(None, ["--loss.video_label_weight", "0.5", "--eval.prompts", "ucf-crime"])
