"""Captions: normalisation, stable caption keys, tokenisation, and the synthetic benchmark's word tokenizer."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from fgclip.data.records import Clip

BOS, EOS, PAD, UNK = "<|startoftext|>", "<|endoftext|>", "<pad>", "<unk>"
_SPACES = re.compile(r"\s+")


def normalize_caption(text: str) -> str:
    """Lower case, single spaces, no trailing punctuation: template duplicates compare equal."""
    return _SPACES.sub(" ", text.strip().lower()).rstrip(" .!,;")


def caption_key(text: str) -> int:
    """Stable 63-bit hash of the normalised caption (identical across processes, ranks and runs)."""
    digest = hashlib.blake2b(normalize_caption(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def drop_positive_captions(negatives: Sequence[str], caption: str) -> tuple[tuple[str, ...], int]:
    """Hard negatives without those equal to the region's own caption (by caption key), and how many went.

    A negative identical to the positive scores exactly as the positive does, so the region's loss could
    never fall below ln 2; it is a labelling slip, not a negative.
    """
    positive = caption_key(caption)
    kept = tuple(n for n in negatives if caption_key(n) != positive)
    return kept, len(negatives) - len(kept)


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


def token_lengths(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    """Untruncated length of each caption in the tokenizer's tokens, BOS and EOS included."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), truncation=False, add_special_tokens=True, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]


@dataclass(frozen=True)
class LengthSummary:
    """Caption lengths of one kind (global, region, hard negative) against the length it is cut to."""

    kind: str
    limit: int  # the kind's truncation length (data.caption_max_length / data.global_caption_max_length)
    lengths: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.lengths)

    @property
    def longest(self) -> int:
        return max(self.lengths, default=0)

    def over(self, limit: int | None = None) -> int:
        """How many captions are longer than `limit` (default: this kind's own): the ones truncated."""
        limit = self.limit if limit is None else limit
        return sum(length > limit for length in self.lengths)

    def share_over(self, limit: int | None = None) -> float:
        return self.over(limit) / self.count if self.count else 0.0

    def percentile(self, q: float) -> int:
        """Nearest-rank percentile (q in [0, 100]) of the lengths; 0 when there are none."""
        if not self.lengths:
            return 0
        ordered = sorted(self.lengths)
        return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]

    def describe(self) -> str:
        return (
            f"{self.kind}: {self.count} captions, tokens median {self.percentile(50)} / p95 {self.percentile(95)} / "
            f"max {self.longest}; {self.over()} ({100 * self.share_over():.1f}%) over {self.limit} are truncated"
        )


def summarize_lengths(
    tokenizer: PreTrainedTokenizerBase, kind: str, texts: Sequence[str], limit: int
) -> LengthSummary:
    return LengthSummary(kind, limit, tuple(token_lengths(tokenizer, texts)))


def clip_caption_lengths(
    tokenizer: PreTrainedTokenizerBase,
    clips: Iterable[Clip],
    caption_max_length: int = 77,
    global_caption_max_length: int = 248,
) -> list[LengthSummary]:
    """Global, region and hard-negative caption lengths of `clips`, each against the length it is cut to."""
    clips = list(clips)
    regions = [region for clip in clips for region in clip.regions]
    return [
        summarize_lengths(tokenizer, "global", [c.global_caption for c in clips], global_caption_max_length),
        summarize_lengths(tokenizer, "region", [r.caption for r in regions], caption_max_length),
        summarize_lengths(
            tokenizer, "hard negative", [n for r in regions for n in r.hard_negatives], caption_max_length
        ),
    ]


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerBase:
    """A local HF tokenizer directory (e.g. CLIP's BPE: vocab.json + merges.txt / tokenizer.json). Never downloaded.

    The released FG-CLIP base directory is one: its config.json (the weights' side) and its tokenizer files
    sit together, so `model.tokenizer` may name the same directory as `model.init`.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {directory} (nothing is downloaded)")
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{directory}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); a CLIP tokenizer directory holds "
            "vocab.json + merges.txt or tokenizer.json (CLIPTokenizer.save_pretrained writes both)"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{directory}: the tokenizer has no EOS token; CLIP pools the text embedding at EOS")
    return tokenizer
