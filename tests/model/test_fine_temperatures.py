"""`model.init_fine_temperatures`: a new run's region and hard-negative temperatures start as loaded, at the
checkpoint's own global temperature, or at logit_scale_init_value (ln 100)."""

import math

import pytest
import torch
from tiny_models import tiny_fgclip

from fgclip import builders
from fgclip.config import ConfigError, load_config
from fgclip.data.text import build_word_tokenizer

LN100 = math.log(100)
FINE = ("logit_scale_finegraind", "logit_scale_hardneg")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny fgclip checkpoint whose global temperature (2.0) and fine ones (3.0, 3.5) all differ from ln 100."""
    model = tiny_fgclip(seed=0)
    with torch.no_grad():
        model.logit_scale.fill_(2.0)
        model.logit_scale_finegraind.fill_(3.0)
        model.logit_scale_hardneg.fill_(3.5)
    path = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(path)
    return path


def _temperatures(init: str, rule: str | None) -> tuple[dict[str, float], object]:
    overrides = ["--model.init", init] + (["--model.init_fine_temperatures", rule] if rule else [])
    section = load_config(None, overrides).model
    model, report = builders.build_model(section, build_word_tokenizer(["a"]))
    return {name: float(scale.detach()) for name, scale in model.logit_scales().items()}, report


def test_each_rule_on_a_checkpoint_that_has_its_own_fine_temperatures(checkpoint):
    loaded, _ = _temperatures(str(checkpoint), None)  # default: "checkpoint"
    assert loaded == pytest.approx(
        {"logit_scale": 2.0, "logit_scale_finegraind": 3.0, "logit_scale_hardneg": 3.5}
    )
    global_, report = _temperatures(str(checkpoint), "global")
    assert global_ == pytest.approx(dict.fromkeys(("logit_scale", *FINE), 2.0))
    assert "init_fine_temperatures=global" in report.initialised["logit_scale_hardneg"]
    init_value, _ = _temperatures(str(checkpoint), "init_value")
    assert init_value == pytest.approx({"logit_scale": 2.0, **dict.fromkeys(FINE, LN100)}, rel=1e-6)


def test_the_stand_in_starts_its_region_temperature_at_its_own_global_one():
    shipped, _ = _temperatures("standin", "checkpoint")
    assert shipped["logit_scale_finegraind"] == pytest.approx(LN100, rel=1e-6)  # never trained: ln 100
    assert math.exp(shipped["logit_scale"]) < 50  # its trained global temperature is far below 100
    matched, _ = _temperatures("standin", "global")
    assert matched["logit_scale_finegraind"] == matched["logit_scale_hardneg"] == shipped["logit_scale"]


def test_an_unknown_rule_is_refused():
    with pytest.raises(ConfigError, match="model.init_fine_temperatures = 'ln100'; choose from"):
        load_config(None, ["--model.init_fine_temperatures", "ln100"])
