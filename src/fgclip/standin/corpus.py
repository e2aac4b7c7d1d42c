"""The stand-in's pretraining corpus: procedural image-caption pairs over broad visual concepts.

It plays the part of the web image-text data a released CLIP was pretrained on: general concepts, none of
the downstream task. Each image (64 x 64 by default, the demo's size) shows 1-3 shapes of the synthetic
benchmark's palette and kinds (drawn with its renderer, `fgclip.synthetic.scene`) on a dark tinted, noisy
background; each caption describes what is drawn with a random subset of its attributes:

- colour and kind (always): "a red circle";
- size: "small" (box side 9-13 px) or "big" (22-30 px);
- position: the 3 x 3 cell of the shape's centre, "at the top left", "at the centre", "at the right", ...;
- motion: a moving shape is drawn with a fading trail of three ghost copies behind it (a motion-blur
  streak, since the stand-in is an image model), "moving left / right / up / down"; a still one has none;
- count: an optional prefix "two shapes:".

Example: "three shapes: a big red circle at the top left moving down, a small cyan square and a blue
triangle at the bottom". Attribute subsets vary per caption, so the text tower learns each word on its own.

Kept out on purpose (no region or anomaly supervision, DESIGN §10): the benchmark's event words and
templates ("flashes", "grows", "shatters", "anomaly", "normal", "scene", "near", "move calmly"), white
shapes (white is the benchmark's flashing colour) and fragmented shapes. The words exist in the tokenizer
(its vocabulary is the benchmark's plus the corpus's) but the stand-in never sees them trained, as a real
CLIP has never seen a dataset's label words in that dataset's sense.

Determinism: image `index` of split `split` is drawn from `numpy.random.default_rng((seed, split id,
index))`, independent of every other image and of the order of generation; the train and held-out splits
use different streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fgclip.synthetic.scene import NOISE_LEVELS, ShapeWindow, paint
from fgclip.synthetic.vocabulary import COLOURS, KINDS, PALETTE, listing, synth_vocabulary

SPLITS = ("train", "heldout")
IMAGE_SIZE = 64
MAX_OBJECTS = 3
SIZE_WORDS = {"small": (9.0, 13.0), "big": (22.0, 30.0)}  # box side in px at size 64
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
ROWS, COLUMNS = ("top", "", "bottom"), ("left", "", "right")
COUNT_WORDS = ("one", "two", "three")
TRAIL_STEP_PX = 4.0  # ghost copies sit 1, 2, 3 steps behind the shape
TRAIL_ALPHAS = (0.55, 0.35, 0.2)  # nearest first
MOVING_FRACTION = 0.5
# Inclusion probabilities of the optional caption parts.
P_SIZE, P_POSITION, P_MOTION, P_COUNT = 0.5, 0.5, 0.7, 0.4
CORPUS_WORDS = frozenset(
    {
        "shape",
        "shapes",
        "at",
        "the",
        "moving",
        "centre",
        *SIZE_WORDS,
        *DIRECTIONS,
        *ROWS,
        *COLUMNS,
        *COUNT_WORDS,
    }
    - {""}
)
# Words of the benchmark's task that no corpus caption may contain.
TASK_WORDS = frozenset(
    {"flashes", "grows", "shatters", "anomaly", "normal", "scene", "near", "move", "calmly"}
)


def standin_vocabulary() -> list[str]:
    """The benchmark's vocabulary plus the corpus's words (sorted): demo captions tokenise without <unk>."""
    return sorted(set(synth_vocabulary()) | CORPUS_WORDS)


@dataclass(frozen=True)
class CorpusObject:
    colour: str
    kind: str
    size: str  # a SIZE_WORDS key
    half: float  # half of the box side, px
    centre: tuple[float, float]  # px
    direction: str | None  # a DIRECTIONS key, None when still

    @property
    def position(self) -> str:
        """The 3 x 3 cell of the centre: "top left", "top", "centre", ..."""
        col = min(int(3 * self.centre[0] / IMAGE_SIZE), 2)
        row = min(int(3 * self.centre[1] / IMAGE_SIZE), 2)
        return " ".join(w for w in (ROWS[row], COLUMNS[col]) if w) or "centre"


@dataclass(frozen=True)
class CorpusImage:
    split: str
    index: int
    objects: tuple[CorpusObject, ...]
    tint: tuple[float, float, float]
    noise_seed: int
    caption: str  # a random attribute subset (training text)
    full_caption: str  # every attribute (held-out retrieval text)


def corpus_image(seed: int, split: str, index: int) -> CorpusImage:
    """Image `index` of `split` for `seed` (its layout and caption; `render` draws it)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    colours = rng.choice(len(COLOURS), size=count, replace=False)
    cells = rng.choice(9, size=count, replace=False)  # distinct 3 x 3 cells: positions are unambiguous
    objects = tuple(_draw_object(rng, COLOURS[c], int(cell)) for c, cell in zip(colours, cells, strict=True))
    tint = tuple(float(v) for v in rng.uniform(8.0, 28.0, size=3))
    noise_seed = int(rng.integers(0, 2**31 - 1))
    caption = describe(objects, rng)
    return CorpusImage(split, index, objects, tint, noise_seed, caption, describe(objects, None))


def _draw_object(rng: np.random.Generator, colour: str, cell: int) -> CorpusObject:
    kind = KINDS[int(rng.integers(len(KINDS)))]
    size = "small" if rng.random() < 0.5 else "big"
    half = float(rng.uniform(*SIZE_WORDS[size])) / 2.0
    third = IMAGE_SIZE / 3.0
    centre = []
    for axis_cell in (cell % 3, cell // 3):  # centre inside its cell and the shape inside the frame
        low = max(axis_cell * third, half + 1.0)
        high = min((axis_cell + 1) * third, IMAGE_SIZE - half - 1.0)
        centre.append(float(rng.uniform(low, high)) if high > low else (low + high) / 2.0)
    direction = None
    if rng.random() < MOVING_FRACTION:
        direction = tuple(DIRECTIONS)[int(rng.integers(len(DIRECTIONS)))]
    return CorpusObject(colour, kind, size, half, (centre[0], centre[1]), direction)


def describe(objects: tuple[CorpusObject, ...], rng: np.random.Generator | None) -> str:
    """A caption of `objects`; `rng` None: every attribute, in drawing order (the held-out text)."""
    order = list(range(len(objects))) if rng is None else list(rng.permutation(len(objects)))
    phrases = [_phrase(objects[i], rng) for i in order]
    text = listing(phrases)
    if rng is None or rng.random() < P_COUNT:
        count = len(objects)
        text = f"{COUNT_WORDS[count - 1]} shape{'s' if count > 1 else ''}: {text}"
    return text


def _phrase(obj: CorpusObject, rng: np.random.Generator | None) -> str:
    def include(p: float) -> bool:
        return rng is None or rng.random() < p

    words = ["a"] + ([obj.size] if include(P_SIZE) else []) + [obj.colour, obj.kind]
    if include(P_POSITION):
        words += ["at the", obj.position]
    if obj.direction is not None and include(P_MOTION):
        words += ["moving", obj.direction]
    return " ".join(words)


def render(image: CorpusImage) -> np.ndarray:
    """(IMAGE_SIZE, IMAGE_SIZE, 3) uint8 RGB: background, then each shape's trail and the shape itself."""
    size = IMAGE_SIZE
    rng = np.random.default_rng(image.noise_seed)
    noise = rng.integers(-NOISE_LEVELS, NOISE_LEVELS + 1, size=(1, size, size, 1), dtype=np.int16)
    pixels = (noise + np.rint(image.tint).astype(np.int16)).astype(np.uint8)  # (1, H, W, 3)
    frame = np.zeros(1, dtype=np.int64)
    for obj in image.objects:
        colour = PALETTE[obj.colour]
        if obj.direction is not None:
            dx, dy = DIRECTIONS[obj.direction]
            for step, alpha in reversed(list(enumerate(TRAIL_ALPHAS, start=1))):  # farthest ghost first
                cx = obj.centre[0] - dx * step * TRAIL_STEP_PX
                cy = obj.centre[1] - dy * step * TRAIL_STEP_PX
                window = _shape_window(obj.kind, cx, cy, obj.half, frame)
                window.alpha = window.alpha * alpha
                paint(pixels, window, colour)
        paint(pixels, _shape_window(obj.kind, *obj.centre, obj.half, frame), colour)
    return pixels[0]


def _shape_window(kind: str, cx: float, cy: float, half: float, frame: np.ndarray) -> ShapeWindow:
    return ShapeWindow(kind, frame, np.array([cx]), np.array([cy]), np.array([half]), IMAGE_SIZE)


def render_batch(seed: int, split: str, indices) -> tuple[np.ndarray, list[str], list[str]]:
    """(N, H, W, 3) uint8 images, their training captions and their full captions."""
    images = [corpus_image(seed, split, int(i)) for i in indices]
    pixels = np.stack([render(image) for image in images])
    return pixels, [image.caption for image in images], [image.full_caption for image in images]
