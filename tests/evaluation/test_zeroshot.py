"""Prompt sets and the two zero-shot scoring rules on hand-made embeddings with known answers."""

import json
import math

import pytest
import torch

from fgclip.evaluation.zeroshot import PromptBank, PromptSet, anomaly_scores, load_prompt_set

UCF_CLASSES = {"Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents",
               "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"}  # fmt: skip
MSAD_CLASSES = {"Assault", "Explosion", "Fighting", "Fire", "Object_falling", "People_falling", "Robbery",
                "Shooting", "Traffic_accident", "Vandalism", "Water_incident"}  # fmt: skip


def test_builtin_prompt_sets_cover_the_dataset_classes():
    ucf, msad = load_prompt_set("ucf-crime"), load_prompt_set("msad")
    assert ucf.classes[0] == "Normal" and set(ucf.classes[1:]) == UCF_CLASSES
    assert set(msad.classes[1:]) == MSAD_CLASSES
    texts, classes = ucf.texts()
    assert len(texts) == len(classes) and classes[: len(ucf.normal)] == [0] * len(ucf.normal)
    assert max(classes) == 13


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"normal": [], "anomaly": {"A": ["a"]}}, "'normal' must be"),
        ({"normal": ["n"], "anomaly": {}}, "'anomaly' must be"),
        ({"normal": ["n"], "anomaly": {"A": [""]}}, "class 'A' needs"),
        ({"normal": ["n"], "anomaly": {"normal": ["x"]}}, "clashes with the normal class"),
        ({"normal": ["n"], "anomaly": {"A": ["a"]}, "negatives": []}, "unknown key"),
    ],
)
def test_bad_prompt_sets_are_rejected(tmp_path, data, message):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        load_prompt_set(path)


def test_missing_prompt_file_names_the_builtin_sets(tmp_path):
    with pytest.raises(FileNotFoundError, match="ucf-crime"):
        load_prompt_set(tmp_path / "nope.json")


def _bank() -> PromptBank:
    # Normal: one prompt along x; class A: three prompts along y; class B: one prompt along -x.
    prompts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    return PromptBank(("Normal", "A", "B"), prompts, torch.tensor([0, 1, 1, 1, 2]), logit_scale=1.0)


def test_softmax_sum_known_answer():
    probs = _bank().class_probabilities(torch.tensor([[1.0, 0.0]]), "softmax_sum")
    z = math.e + 3 + math.exp(-1)  # prompt logits 1, 0, 0, 0, -1
    assert probs[0].tolist() == pytest.approx([math.e / z, 3 / z, math.exp(-1) / z])


def test_ensemble_weighs_classes_not_prompt_counts():
    probs = _bank().class_probabilities(torch.tensor([[1.0, 0.0]]), "ensemble")
    z = math.e + 1 + math.exp(-1)  # class logits 1, 0, -1: class A counts once despite its three prompts
    assert probs[0].tolist() == pytest.approx([math.e / z, 1 / z, math.exp(-1) / z])


def test_class_embeds_are_normalised_means():
    prompts = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), dim=-1)
    bank = PromptBank(("Normal", "A"), prompts, torch.tensor([0, 1, 1]), logit_scale=1.0)
    expected = torch.nn.functional.normalize(prompts[1] + prompts[2], dim=0)
    assert torch.allclose(bank.class_embeds()[1], expected)


def test_anomaly_score_keeps_tiny_probabilities_apart():
    bank = PromptBank(
        ("Normal", "A"), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), logit_scale=100.0
    )
    embeds = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.02]]), dim=-1)
    scores = anomaly_scores(bank.class_probabilities(embeds, "ensemble"))
    assert 0 < scores[0] < scores[1] < 1e-40  # 1 - p_normal would round both to exactly 0 (a tie)


def test_unknown_rule_is_an_error():
    with pytest.raises(ValueError, match="unknown scoring rule"):
        _bank().class_probabilities(torch.zeros(1, 2), "max")


def test_prompt_set_from_dict_keeps_class_order():
    prompts = PromptSet.from_dict({"normal": ["n"], "anomaly": {"Z": ["z"], "A": ["a"]}}, "test")
    assert prompts.classes == ("Normal", "Z", "A")
    assert prompts.texts() == (["n", "z", "a"], [0, 1, 2])


def test_cli_choices_match_the_scoring_rules():
    from fgclip import builders
    from fgclip.commands import _checkpoint as commands
    from fgclip.evaluation import zeroshot

    assert commands.SCORING_CHOICES == zeroshot.SCORING_RULES
    assert commands.DEFAULT_SCORING == zeroshot.DEFAULT_SCORING == builders.EvalOptions().scoring


def test_config_names_every_evaluator():
    from fgclip.config import EvalSection
    from fgclip.evaluation.evaluators import EVALUATORS

    assert EvalSection().evaluators == list(EVALUATORS)


def test_prompt_temperature_is_the_clamped_one_the_losses_use():
    """A checkpoint saved with a log-scale above the ceiling scores with the ceiling, as training did."""
    from fgclip.data.text import build_word_tokenizer
    from fgclip.evaluation.zeroshot import encode_prompts
    from tests.tiny_models import tiny_fgclip

    prompts = PromptSet(("a quiet street",), {"Fight": ("people fighting",)})
    tokenizer = build_word_tokenizer(["a", "quiet", "street", "people", "fighting"])
    model = tiny_fgclip().eval()  # vocab 40 covers the word tokenizer's ids
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100) + 1.0)
    bank = encode_prompts(model, tokenizer, prompts, head="clip")
    assert bank.logit_scale == pytest.approx(math.exp(model.config.logit_scale_max))
