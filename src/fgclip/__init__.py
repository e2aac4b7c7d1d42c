"""fgclip: fine-grained video-text alignment for CLIP.

The public names are imported lazily, so `fgclip.data` tools and the CLI start without loading
transformers until a model is needed.
"""

__version__ = "0.1.0"
__all__ = ["FGCLIPConfig", "FGCLIPModel", "load_pretrained"]

_LAZY = {
    "FGCLIPConfig": "fgclip.model.configuration",
    "FGCLIPModel": "fgclip.model.modeling",
    "load_pretrained": "fgclip.model.loading",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fgclip' has no attribute {name!r}")
