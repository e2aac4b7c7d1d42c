"""Captions: normalisation, stable caption keys, tokenisation, and the synthetic benchmark's word tokenizer."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<|startoftext|>", "<|endoftext|>", "<pad>", "<unk>"
_SPACES = re.compile(r"\s+")


def normalize_caption(text: str) -> str:
    """Lower case, single spaces, no trailing punctuation: template duplicates compare equal."""
    return _SPACES.sub(" ", text.strip().lower()).rstrip(" .!,;")


def caption_key(text: str) -> int:
    """Stable 63-bit hash of the normalised caption (identical across processes, ranks and runs)."""
    digest = hashlib.blake2b(normalize_caption(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


class CaptionTokenizer:
    """Tokenises captions to id lists with BOS/EOS, truncated to a maximum length (EOS kept).

    Each caption kind has its own length (the dataset passes it per call): global captions use FG-CLIP's
    long position table (`data.global_caption_max_length`, 248), region and hard-negative captions
    CLIP's 77 (`data.caption_max_length`).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int = 77):
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; CLIP pools the text embedding at EOS")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )

    def __call__(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        if not texts:
            return []
        encoded = self.tokenizer(
            list(texts), truncation=True, max_length=max_length or self.max_length, add_special_tokens=True
        )
        return encoded["input_ids"]


def build_word_tokenizer(vocabulary: Sequence[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a closed vocabulary (the synthetic benchmark's), saved like any HF one.

    Special ids: BOS 0, EOS 1, PAD 3 — EOS must not be 2, which HF CLIP treats as a legacy checkpoint and
    pools at the largest token id instead of at EOS.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    specials = [BOS, EOS, UNK, PAD]
    vocab = {token: i for i, token in enumerate(specials)}
    for word in sorted(set(vocabulary) - set(specials)):
        vocab[word] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=77,
    )
