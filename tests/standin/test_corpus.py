"""The stand-in's corpus: deterministic per seed and image, captions true to the drawing, no task words."""

import numpy as np

from fgclip.data.text import build_word_tokenizer
from fgclip.standin import corpus
from fgclip.synthetic.vocabulary import PALETTE, tokenize_caption


def test_an_image_depends_only_on_seed_split_and_index():
    alone = corpus.render(corpus.corpus_image(3, "train", 17))
    pixels, captions, _ = corpus.render_batch(3, "train", range(10, 20))
    assert np.array_equal(pixels[7], alone)
    assert captions[7] == corpus.corpus_image(3, "train", 17).caption
    assert not np.array_equal(corpus.render(corpus.corpus_image(4, "train", 17)), alone)
    assert corpus.corpus_image(3, "heldout", 17) != corpus.corpus_image(3, "train", 17)


def test_captions_stay_out_of_the_benchmark_task_and_tokenise_without_unknowns():
    _, captions, full = corpus.render_batch(0, "train", range(300))
    words = {w for c in captions + full for w in tokenize_caption(c)}
    assert not words & corpus.TASK_WORDS
    tokenizer = build_word_tokenizer(corpus.standin_vocabulary())
    ids = tokenizer(captions + full)["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)
    assert max(len(row) for row in ids) <= 77


def test_full_caption_names_every_attribute_of_every_object():
    image = corpus.corpus_image(0, "heldout", 5)
    for obj in image.objects:
        assert f"a {obj.size} {obj.colour} {obj.kind} at the {obj.position}" in image.full_caption
        if obj.direction:
            assert f"moving {obj.direction}" in image.full_caption
    assert image.full_caption.startswith(corpus.COUNT_WORDS[len(image.objects) - 1])


def test_a_still_shape_is_drawn_in_its_colour_at_its_centre_and_a_moving_one_leaves_a_trail():
    obj = corpus.CorpusObject("red", "square", "big", 12.0, (32.0, 32.0), None)
    image = corpus.CorpusImage("train", 0, (obj,), (10.0, 10.0, 10.0), 1, "", "")
    still = corpus.render(image).astype(int)
    assert np.abs(still[32, 32] - PALETTE["red"]).max() <= 4
    moving = corpus.render(
        corpus.CorpusImage("train", 0, (obj.__class__(**{**obj.__dict__, "direction": "right"}),),
                           image.tint, 1, "", "")
    ).astype(int)  # fmt: skip
    left_of_box = moving[32, 32 - 12 - 6]  # inside the trail, behind a shape moving right
    assert 40 < left_of_box[0] < PALETTE["red"][0] - 40
    assert np.abs(still[32, 32 - 12 - 6] - 10).max() <= 4  # background where the still shape has no trail
