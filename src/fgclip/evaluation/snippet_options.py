"""How videos are cut into snippets and embedded: the one place these settings have defaults.

Scoring (`fgclip eval`, the demo), inference (`fgclip infer`) and feature export (`fgclip export-features`) take
one `SnippetOptions` whole; the config's `eval` section and the commands' flags start from these defaults. It
imports nothing, so the config and the command-line parser can read the defaults without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SnippetOptions:
    snippet_frames: int = 16  # native frames per snippet (the VAD protocol's 16)
    frames_per_snippet: int = 8  # frames sampled from each snippet and pooled by the temporal module
    batch_frames: int = 256  # frames decoded and embedded at a time (bounds memory on long videos)
    workers: int = 0  # DataLoader worker processes decoding snippets while the model embeds (0: in-process)


DEFAULT_SNIPPETS = SnippetOptions()  # frozen: safe as a default argument
