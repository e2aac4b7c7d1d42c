"""The pretrained stand-in (DESIGN §10): a tiny CLIP pretrained on a synthetic image-caption corpus.

`model.init: standin` loads the copy shipped in the package (`weights/`); `fgclip pretrain-standin`
rebuilds it (docs/standin.md).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

STANDIN = "standin"  # the model.init value naming the shipped stand-in


def standin_path() -> Path:
    """The shipped stand-in directory (config.json, model.safetensors, tokenizer, standin.json)."""
    return Path(str(resources.files("fgclip.standin") / "weights"))


def resolve_init(init: str) -> str:
    """`model.init` with the name "standin" replaced by the shipped directory; anything else unchanged."""
    return str(standin_path()) if init == STANDIN else init
