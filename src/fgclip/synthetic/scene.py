"""One synthetic video: its shapes, their motion and true boxes, its annotations, and its rendering.

A :class:`VideoSpec` holds everything needed to render a video and to know every shape's true box at any
instant; :func:`make_video_spec` (``generator.py``) draws one from a seed. Rendering is anti-aliased
coverage of each shape in a small window around its box (:class:`ShapeWindow`) blended into the frames
(:func:`paint`); the stand-in's image corpus draws with the same two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fgclip.synthetic.vocabulary import (
    EVENT_CLASSES,
    NORMAL_CLASS,
    PALETTE,
    abnormal_global_caption,
    abnormal_region_caption,
    normal_global_caption,
    normal_region_caption,
    object_region_caption,
    palette_order,
)

FLASH_WHITE = (250, 250, 250)
GROW_FACTOR = 2.0
FLASH_PERIOD_FRAMES = 2  # native frames per flashing phase
FLASH_RIM_PX = 2.0  # at size 64
SHATTER_CELL_PX = 6.0  # fragments: SHATTER_FRAGMENT_PX squares on a grid of this pitch (at size 64), each
SHATTER_FRAGMENT_PX = 4.0  # drawn with probability SHATTER_KEEP, afresh every frame; the one at the
SHATTER_KEEP = 0.6  # shape's centroid always (a shattered shape never vanishes)
NOISE_LEVELS = 3  # background noise: uniform integers in [-3, 3] (std 2)


def reflect(u: np.ndarray | float, length: np.ndarray | float) -> np.ndarray:
    """Triangle wave: position in [0, length] of a point moving freely along u and bouncing at 0 and length."""
    m = np.mod(u, 2.0 * length)
    return np.where(m <= length, m, 2.0 * length - m)


@dataclass(frozen=True)
class Shape:
    colour: str
    kind: str
    half: float  # half of the box side at scale 1, pixels
    start: tuple[float, float]  # centre at t = 0, pixels
    velocity: tuple[float, float]  # pixels per second
    margin: float  # the centre stays in [margin, size - margin] on both axes

    def centre(self, t: np.ndarray | float, size: int) -> tuple[np.ndarray, np.ndarray]:
        length = size - 2.0 * self.margin
        cx = self.margin + reflect(self.start[0] - self.margin + self.velocity[0] * np.asarray(t), length)
        cy = self.margin + reflect(self.start[1] - self.margin + self.velocity[1] * np.asarray(t), length)
        return cx, cy

    def bounce_times(self, t0: float, t1: float, size: int) -> list[float]:
        """Instants in (t0, t1) at which the centre bounces off a margin (either axis)."""
        length = size - 2.0 * self.margin
        times = []
        for p0, v in zip(self.start, self.velocity, strict=True):
            if abs(v) < 1e-12:
                continue
            u0 = p0 - self.margin
            # bounces where u0 + v t is a multiple of length
            ks = sorted(((u0 + v * t0) / length, (u0 + v * t1) / length))
            for k in range(math.floor(ks[0]), math.ceil(ks[1]) + 1):
                t = (k * length - u0) / v
                if t0 < t < t1:
                    times.append(t)
        return sorted(times)


@dataclass(frozen=True)
class VideoSpec:
    """One synthetic video: everything needed to render it and to know its true boxes at any instant."""

    name: str
    label: str  # a SYNTH_CLASSES entry
    index: int  # 1-based within its class
    size: int
    fps: float
    num_frames: int
    tint: tuple[float, float, float]
    shapes: tuple[Shape, ...]  # shapes[0] is the actor in abnormal videos
    event_frames_ann: tuple[int, int] | None  # (f0, f1) on the annotation grid
    annotation_fps: float
    noise_seed: int
    timestamps: tuple[float, float] | None = None  # normal videos: the clip span

    @property
    def video(self) -> str:
        return f"videos/{self.label}/{self.name}.mp4"

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    @property
    def is_abnormal(self) -> bool:
        return self.event_frames_ann is not None

    @property
    def event_span_s(self) -> tuple[float, float] | None:
        if self.event_frames_ann is None:
            return None
        f0, f1 = self.event_frames_ann
        return f0 / self.annotation_fps, f1 / self.annotation_fps

    @property
    def event_native_frames(self) -> tuple[int, int] | None:
        """First and last (inclusive) native frame drawn with the event."""
        span = self.event_span_s
        if span is None:
            return None
        return math.ceil(span[0] * self.fps - 1e-6), math.floor(span[1] * self.fps + 1e-6)

    def scale(self, shape_index: int, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        if self.label != "Growing" or shape_index != 0:
            return np.ones_like(t)
        t0, t1 = self.event_span_s
        inside = (t >= t0 - 1e-9) & (t <= t1 + 1e-9)
        return np.where(inside, GROW_FACTOR, 1.0)

    def box_px(self, shape_index: int, t: np.ndarray | float) -> np.ndarray:
        """True box(es) [x1, y1, x2, y2] in pixels at time(s) t; shape (..., 4)."""
        shape = self.shapes[shape_index]
        cx, cy = shape.centre(t, self.size)
        half = shape.half * self.scale(shape_index, t)
        return np.stack([cx - half, cy - half, cx + half, cy + half], axis=-1)

    def box(self, shape_index: int, t: np.ndarray | float) -> np.ndarray:
        """True box(es) normalised to [0, 1] of the frame."""
        return np.clip(self.box_px(shape_index, t) / self.size, 0.0, 1.0)

    # -------------------------------------------------------------------------------------- annotations

    def objects(self) -> list[tuple[str, str]]:
        return [(s.colour, s.kind) for s in self.shapes]

    def region_caption(self) -> str:
        if self.is_abnormal:
            return abnormal_region_caption(self.objects()[0], self.label)
        return normal_region_caption(palette_order(self.objects()))

    def global_caption(self) -> str:
        if self.is_abnormal:
            objects = self.objects()
            return abnormal_global_caption(objects[0], self.label, palette_order(objects[1:]))
        return normal_global_caption(palette_order(self.objects()))

    def keyframe_frames(self, keyframe_every: int, shape_index: int = 0) -> list[int]:
        """Annotation frames of a shape's track over `track_span_frames`: a regular grid, the span's ends, and
        both sides of every bounce."""
        f0, f1 = self.track_span_frames()
        frames = set(range(f0, f1, keyframe_every)) | {f1}
        t0, t1 = f0 / self.annotation_fps, f1 / self.annotation_fps
        for t in self.shapes[shape_index].bounce_times(t0, t1, self.size):
            position = t * self.annotation_fps
            frames.update({math.floor(position), math.ceil(position)})
        return sorted(f for f in frames if f0 <= f <= f1)

    def track_span_frames(self) -> tuple[int, int]:
        """Annotation frames the tracks cover: the event (abnormal), the clip span (normal)."""
        if self.is_abnormal:
            return self.event_frames_ann
        t0, t1 = self.timestamps
        return math.ceil(t0 * self.annotation_fps - 1e-6), math.floor(t1 * self.annotation_fps + 1e-6)

    def track(self, keyframe_every: int, shape_index: int = 0) -> list[dict]:
        frames = self.keyframe_frames(keyframe_every, shape_index)
        boxes = self.box(shape_index, np.array(frames, dtype=np.float64) / self.annotation_fps)
        track = [
            {"frame": int(f), "bbox": [round(float(v), 6) for v in b]}
            for f, b in zip(frames, boxes, strict=True)
        ]
        track[-1]["enabled"] = False
        return track

    def region_captions(self, normal_regions: bool = False) -> list[str]:
        """The entry's region captions. With `normal_regions`, every calm shape has its own region ("a cyan
        square moving calmly"), after the actor in an abnormal video, in place of a normal video's scene region."""
        if not normal_regions:
            return [self.region_caption()]
        calm = [object_region_caption(obj) for obj in self.objects()[1 if self.is_abnormal else 0 :]]
        return [self.region_caption(), *calm] if self.is_abnormal else calm

    def manifest_entry(self, keyframe_every: int, normal_regions: bool = False) -> dict:
        """A clip-list entry. `normal_regions` (``data synth --normal-regions``): every shape is a region with its
        own box track and caption, so a region is never "small box = event, full frame = calm": the region
        contrast must tell a shattering cyan square from a calm one (issue 24)."""
        entry = {
            "video": self.video,
            "global_caption": self.global_caption(),
            "region_captions": self.region_captions(normal_regions),
            "box_infos": [self.track(keyframe_every)] if self.is_abnormal else [[]],
            "timestamps": None if self.is_abnormal else [self.timestamps[0], self.timestamps[1]],
            "group": self.scene,
        }
        if normal_regions:
            first = 1 if self.is_abnormal else 0
            calm = [self.track(keyframe_every, i) for i in range(first, len(self.shapes))]
            entry["box_infos"] = entry["box_infos"][:first] + calm
            entry["region_labels"] = ["abnormal"] * first + ["normal"] * len(calm)
            entry["label"] = "abnormal" if self.is_abnormal else "normal"
        return entry

    @property
    def scene(self) -> str:
        """Twins share a scene: the abnormal video's name. Clips of one scene are batched together."""
        if self.is_abnormal:
            return self.name.removesuffix("_x264")
        return "{}{:04d}".format(*twin_of(self.index))

    def annotation_line(self) -> str:
        if not self.is_abnormal:
            return f"{self.name}  {NORMAL_CLASS}  -1  -1  -1  -1"
        s1, e1 = self.event_native_frames
        return f"{self.name}  {self.label}  {s1}  {e1}  -1  -1"

    # ----------------------------------------------------------------------------------------- rendering

    def render(self) -> np.ndarray:
        """All frames, (N, size, size, 3) uint8 RGB."""
        n, size = self.num_frames, self.size
        times = np.arange(n, dtype=np.float64) / self.fps
        rng = np.random.default_rng(self.noise_seed)
        # grey (luma) noise, uniform integers in [-NOISE_LEVELS, NOISE_LEVELS]
        noise = rng.integers(-NOISE_LEVELS, NOISE_LEVELS + 1, size=(n, size, size, 1), dtype=np.int16)
        image = (noise + np.rint(self.tint).astype(np.int16)).astype(np.uint8)  # tint >= 8 > NOISE_LEVELS
        in_event = np.zeros(n, dtype=bool)
        if self.is_abnormal:
            s1, e1 = self.event_native_frames
            in_event[s1 : e1 + 1] = True
        for i in [*range(1, len(self.shapes)), 0]:  # the actor is drawn on top
            shape = self.shapes[i]
            cx, cy = shape.centre(times, size)
            half = shape.half * self.scale(i, times)  # a growing actor's doubled box is its whole event
            special = i == 0 and self.label in ("Flashing", "Shattering")
            frames = np.flatnonzero(~in_event) if special else np.arange(n)
            paint(image, ShapeWindow(shape.kind, frames, cx, cy, half, size), PALETTE[shape.colour])
            if special:
                self._paint_event(image, np.flatnonzero(in_event), shape, cx, cy, half, rng)
        return image

    def _paint_event(self, image, frames, shape, cx, cy, half, rng) -> None:
        if len(frames) == 0:
            return
        colour = PALETTE[shape.colour]
        if self.label == "Flashing":
            s1 = self.event_native_frames[0]
            rim_px = FLASH_RIM_PX * self.size / 64.0
            phase = ((frames - s1) // FLASH_PERIOD_FRAMES) % 2 == 0
            for subset, core, rim in (
                (frames[phase], FLASH_WHITE, colour),
                (frames[~phase], colour, FLASH_WHITE),
            ):
                if len(subset):
                    paint(image, ShapeWindow(shape.kind, subset, cx, cy, half, self.size), rim)
                    paint(image, ShapeWindow(shape.kind, subset, cx, cy, half, self.size, inset=rim_px), core)
        elif self.label == "Shattering":
            window = ShapeWindow(shape.kind, frames, cx, cy, half, self.size)
            cell = SHATTER_CELL_PX * self.size / 64.0
            left, top = cx[frames] - half[frames], cy[frames] - half[frames]
            ux = (window.xs + 0.5 - left[:, None]) / cell  # (F, w) in cells from the box's corner
            uy = (window.ys + 0.5 - top[:, None]) / cell
            cells = int(math.ceil(2 * half.max() / cell)) + 1
            keep = rng.random((len(frames), cells, cells)) < SHATTER_KEEP  # fresh fragments every frame
            centroid_y = half.max() * (4.0 / 3.0 if shape.kind == "triangle" else 1.0)  # from the box's top
            keep[:, int(centroid_y // cell), int(half.max() // cell)] = True
            ix = np.clip(np.floor(ux).astype(int), 0, cells - 1)
            iy = np.clip(np.floor(uy).astype(int), 0, cells - 1)
            kept = keep[np.arange(len(frames))[:, None, None], iy[:, :, None], ix[:, None, :]]  # (F, w, w)
            solid = SHATTER_FRAGMENT_PX / SHATTER_CELL_PX  # the rest of each cell is a gap
            in_x = (ux - np.floor(ux)) < solid
            in_y = (uy - np.floor(uy)) < solid
            window.alpha = window.alpha * kept * (in_y[:, :, None] & in_x[:, None, :])
            paint(image, window, colour)


class ShapeWindow:
    """Anti-aliased coverage of one shape on some frames, in a square window around its box.

    `alpha` is (F, w, w) over pixel rows `ys` (F, w) and columns `xs` (F, w); the shape's box is
    [c - half, c + half] and a pixel centre on its edge is half covered. `inset` > 0 moves every edge inwards
    by that many pixels (the core of a shape, leaving a rim of that width).
    """

    def __init__(self, kind, frames, cx, cy, half, size, inset: float = 0.0):
        self.frames = frames
        cx, cy = cx[frames], cy[frames]
        half = np.maximum(half[frames], 0.5)
        w = min(size, int(math.ceil(2.0 * float(half.max()))) + 3)
        offsets = np.arange(w)
        x0 = np.clip(np.floor(cx - half).astype(int) - 1, 0, size - w)
        y0 = np.clip(np.floor(cy - half).astype(int) - 1, 0, size - w)
        self.xs = x0[:, None] + offsets  # (F, w)
        self.ys = y0[:, None] + offsets
        dx = (self.xs + 0.5 - cx[:, None]).astype(np.float32)[:, None, :]  # (F, 1, w)
        dy = (self.ys + 0.5 - cy[:, None]).astype(np.float32)[:, :, None]  # (F, w, 1)
        self.alpha = _coverage(kind, dx, dy, half.astype(np.float32)[:, None, None], np.float32(inset))


def _coverage(kind: str, dx: np.ndarray, dy: np.ndarray, half: np.ndarray, inset) -> np.ndarray:
    """Coverage from the signed distance to each edge (positive inside), less `inset`, + 0.5 px."""
    if kind == "circle":
        return np.clip(half - np.sqrt(dx * dx + dy * dy) - inset + 0.5, 0.0, 1.0)
    if kind == "square":
        return np.clip(half - np.abs(dx) - inset + 0.5, 0.0, 1.0) * np.clip(
            half - np.abs(dy) - inset + 0.5, 0.0, 1.0
        )
    if kind == "triangle":  # apex at the top centre, base along the bottom of the box
        base = np.clip(half - dy - inset + 0.5, 0.0, 1.0)
        side = ((dy + half) / 2.0 - np.abs(dx)) * np.float32(2.0 / math.sqrt(5.0))
        return base * np.clip(side - inset + 0.5, 0.0, 1.0)
    raise ValueError(f"unknown shape kind {kind!r}")


def paint(image: np.ndarray, window: ShapeWindow, colour) -> None:
    """Alpha-blend one colour into `image` through a window's coverage."""
    if len(window.frames) == 0:
        return
    index = (window.frames[:, None, None], window.ys[:, :, None], window.xs[:, None, :])
    patch = image[index].astype(np.float32)  # (F, w, w, 3)
    patch += window.alpha[..., None] * (np.asarray(colour, dtype=np.float32) - patch)
    image[index] = np.rint(patch).astype(np.uint8)  # convex blend of values in [0, 255]: no clipping


# ------------------------------------------------------------------------------------------------ sampling


def twin_of(normal_index: int) -> tuple[str, int]:
    """The abnormal video a normal one is the twin of: Normal0001 -> Flashing0001, Normal0002 -> Growing0001,
    Normal0003 -> Shattering0001, Normal0004 -> Flashing0002, ... (whether or not that video is generated).

    Twins differ only by the event, so telling a normal clip from an abnormal one with the same objects
    (clip retrieval on the test split, the zero-shot anomaly score) needs the event itself.
    """
    return EVENT_CLASSES[(normal_index - 1) % len(EVENT_CLASSES)], (normal_index - 1) // len(
        EVENT_CLASSES
    ) + 1
