"""The synthetic video benchmark (DESIGN §10), a library: it imports only the data library.

`vocabulary` (classes, palette, captions, prompts), `scene` (one video: shapes, true boxes, rendering),
`generator` (draw, split and write a whole benchmark). `fgclip data synth` is its command.
"""

from fgclip.synthetic.generator import SynthSummary, generate
from fgclip.synthetic.vocabulary import synth_vocabulary, tokenize_caption

__all__ = ["SynthSummary", "generate", "synth_vocabulary", "tokenize_caption"]
