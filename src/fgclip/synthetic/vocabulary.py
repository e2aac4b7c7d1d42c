"""The synthetic benchmark's words: classes, palette, kinds, event verbs, caption templates and prompts.

Captions are lower case, from templates with a closed vocabulary (:func:`synth_vocabulary`). Tokens are
what ``re.findall(r"\\w+|[^\\w\\s]+", caption)`` returns (the rule of the word tokenizer's ``Whitespace``
pre-tokenizer), so ``:`` and ``,`` are tokens of their own and part of the vocabulary.
"""

from __future__ import annotations

import re
from itertools import combinations, product

NORMAL_CLASS = "Normal"
EVENT_CLASSES = ("Flashing", "Growing", "Shattering")
SYNTH_CLASSES = (NORMAL_CLASS, *EVENT_CLASSES)
EVENT_VERBS = {"Flashing": "flashes", "Growing": "grows", "Shattering": "shatters"}
# Well separated in RGB and still distinct after yuv420p chroma subsampling; white is reserved for flashing.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 255),
    "yellow": (240, 220, 40),
    "cyan": (40, 220, 230),
    "magenta": (230, 50, 220),
}
COLOURS = tuple(PALETTE)
KINDS = ("circle", "square", "triangle")
_TOKEN = re.compile(r"\w+|[^\w\s]+")


def tokenize_caption(text: str) -> list[str]:
    """Split a caption into vocabulary tokens (words, and ':' / ',' as tokens of their own)."""
    return _TOKEN.findall(text.lower())


def synth_vocabulary() -> list[str]:
    """Every token any caption, hard negative or prompt of the benchmark can contain (sorted, seed-free)."""
    words = {"a", "an", "anomaly", "normal", "scene", "move", "moving", "calmly", "near", "and", ":", ","}
    words.update(COLOURS, KINDS, EVENT_VERBS.values())
    return sorted(words)


# ----------------------------------------------------------------------------------------------- captions


def _phrase(colour: str, kind: str) -> str:
    return f"a {colour} {kind}"


def listing(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def normal_region_caption(objects: list[tuple[str, str]]) -> str:
    return f"{listing([_phrase(c, k) for c, k in objects])} move calmly"


def object_region_caption(obj: tuple[str, str]) -> str:
    """One calm object's own region (`data synth --normal-regions`): what it does, "a cyan square moving calmly"."""
    return f"{_phrase(*obj)} moving calmly"


def normal_global_caption(objects: list[tuple[str, str]]) -> str:
    return f"a normal scene: {listing([_phrase(c, k) for c, k in objects])} move"


def abnormal_region_caption(actor: tuple[str, str], event: str) -> str:
    return f"{_phrase(*actor)} {EVENT_VERBS[event]}"


def abnormal_global_caption(actor: tuple[str, str], event: str, others: list[tuple[str, str]]) -> str:
    return f"an anomaly: {abnormal_region_caption(actor, event)} near {listing([_phrase(c, k) for c, k in others])}"


def palette_order(objects: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(objects, key=lambda o: COLOURS.index(o[0]))


def prompt_set() -> dict:
    """Zero-shot prompts: global-caption templates over every two-object scene (colours in palette order)."""
    pairs = [(a, b) for a, b in combinations(COLOURS, 2)]
    normal = [
        normal_global_caption([(a, ka), (b, kb)])
        for (a, b), (ka, kb) in product(pairs, product(KINDS, KINDS))
    ]
    anomaly = {
        event: [
            abnormal_global_caption((colour, kind), event, [(other, other_kind)])
            for colour, kind in product(COLOURS, KINDS)
            for other in COLOURS
            if other != colour
            for other_kind in KINDS
        ]
        for event in EVENT_CLASSES
    }
    return {"normal": normal, "anomaly": anomaly}


# ------------------------------------------------------------------------------------------------- motion
