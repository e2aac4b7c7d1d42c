"""Stand-in pretraining: a short run lowers the contrastive loss; the saved directory loads like any checkpoint."""

import pytest
import torch

from fgclip.builders import build_model, build_tokenizer
from fgclip.checks import check_tokenizer
from fgclip.config import ModelSection
from fgclip.model.loading import load_pretrained
from fgclip.standin import corpus
from fgclip.standin.pretrain import (
    PretrainSettings,
    demo_tiny_architecture,
    loss_floor,
    pretrain,
    save_standin,
)

SHORT = PretrainSettings(
    steps=20, batch_size=16, num_train_images=16, num_heldout_images=16, warmup_steps=2, log_every=10
)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    result = pretrain(SHORT, log=lambda _: None)
    out = save_standin(result, SHORT, tmp_path_factory.mktemp("standin"))
    return result, out


def test_twenty_steps_lower_the_contrastive_loss_below_chance(short_run):
    result, _ = short_run
    first, last = sum(result.losses[:4]) / 4, sum(result.losses[-4:]) / 4
    assert len(result.losses) == SHORT.steps
    assert last < first - 0.3
    assert (
        last < loss_floor(SHORT.batch_size) - 0.15
    )  # better than uniform scores over the batch (measured 0.29)


def test_saved_standin_loads_exactly_with_its_own_tokenizer(short_run):
    result, out = short_run
    model, report = load_pretrained(out)
    assert report.source_format == "fgclip checkpoint"
    assert not report.missing_backbone and not report.initialised and not report.unexpected
    section = ModelSection(init=str(out))
    tokenizer = build_tokenizer(section)
    check_tokenizer(model, tokenizer)
    captions = corpus.render_batch(0, "heldout", range(3))[2]
    assert tokenizer(captions)["input_ids"] == result.tokenizer(captions)["input_ids"]
    assert model.config.vision_config.hidden_size == demo_tiny_architecture()["vision_width"]
    built, _ = build_model(section, tokenizer)
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(built.state_dict()[name], tensor), name


def test_fgclip_heads_start_as_copies_of_the_trained_clip_heads(short_run):
    result, _ = short_run
    model = result.model
    assert torch.equal(model.roi_projection.weight, model.visual_projection.weight)
    assert torch.equal(model.text_filip_projection.weight, model.text_projection.weight)
    keep = model.config.long_text_keep_positions
    embeddings = model.text_model.embeddings
    assert torch.equal(
        embeddings.position_embedding_ori.weight[:keep], embeddings.position_embedding.weight[:keep]
    )


def test_command_refuses_a_non_empty_output_directory(tmp_path, capsys):
    from fgclip.cli import main

    (tmp_path / "old.txt").write_text("x")
    assert main(["pretrain-standin", "--out", str(tmp_path)]) == 1
    assert "fgclip pretrain-standin: --out" in capsys.readouterr().err
