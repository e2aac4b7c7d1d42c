"""The stand-in shipped in the package: loads as `model.init: standin`, was built with the current defaults,
and reproduces the held-out retrieval recorded when it was built (a known answer for these weights)."""

import json
from dataclasses import asdict

import pytest

from fgclip.builders import build_model, build_tokenizer
from fgclip.checks import check_tokenizer
from fgclip.config import ModelSection
from fgclip.standin import standin_path
from fgclip.standin.pretrain import (
    PROVENANCE_FILE,
    PretrainSettings,
    demo_tiny_architecture,
    heldout_retrieval,
)

MAX_SHIPPED_BYTES = 8 * 2**20


@pytest.fixture(scope="module")
def provenance():
    return json.loads((standin_path() / PROVENANCE_FILE).read_text())


def test_shipped_standin_is_small_and_built_with_the_current_defaults(provenance):
    weights = standin_path() / "model.safetensors"
    assert weights.stat().st_size < MAX_SHIPPED_BYTES
    assert provenance["settings"] == asdict(PretrainSettings())


def test_model_init_standin_loads_the_shipped_weights_with_their_tokenizer(provenance):
    section = ModelSection(init="standin")
    tokenizer = build_tokenizer(section)
    model, report = build_model(section, tokenizer)
    check_tokenizer(model, tokenizer)
    assert report.source == str(standin_path()) and not report.initialised and not report.missing_backbone
    tiny = demo_tiny_architecture()
    assert model.config.vision_config.num_hidden_layers == tiny["vision_layers"]
    assert model.config.projection_dim == tiny["projection_dim"]
    recorded = provenance["heldout"]
    measured = heldout_retrieval(
        model.eval(), tokenizer, provenance["settings"]["seed"], recorded["num_images"]
    )
    for key in (k for k in recorded if k.endswith("R@1") and "/" in k):  # both text paths, both directions
        assert measured[key] == pytest.approx(recorded[key], abs=0.01), key  # BLAS differences only
        assert measured[key] > 10 * measured["chance_R@1"], key
