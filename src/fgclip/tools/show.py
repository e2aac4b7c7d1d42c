"""Draw a clip as the model receives it: the T sampled frames with their boxes and captions (`fgclip data show`).

Nothing here picks frames or interpolates boxes itself: the frame plan is `ClipDataset.frame_plan` under the
RNG state training gives the item (`EpochSeededDataset`: seeded from (seed, epoch, index)), the frames are
`ClipDataset.read_frames` at those times (the frame cache when the dataset has one), the boxes are
`ClipDataset.region_boxes` at the presentation time of each frame shown. The one thing drawn that the model
never sees is the *ghost* box: where a region is not visible on a frame (outside its track's visible windows),
the box its keyframes would give if the track ran on through the gap (the same interpolation over the track's
keyframes with the segment breaks removed, clamped to the first and last keyframe) is drawn DASHED, so a box
drifting off its object, or a window the samples miss, is seen at once.

Outputs: `draw_sheet` (a contact sheet PNG, optionally with the timeline under it), `write_mp4`
(every native frame of the span, boxes drawn by the same interpolation, PyAV) and `draw_grid_check` (the clip
with the annotation grid it was read on beside the same keyframe numbers read on the video's native fps).
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fgclip.data.dataset import ClipDataset, FramePlan
from fgclip.data.epochs import EpochSeededDataset
from fgclip.data.records import Box, Clip, Keyframe, Region, Track
from fgclip.data.tracks import box_at, visible_windows
from fgclip.data.video import iter_frames, probe_video, video_frame_times, write_video

# Distinct, colour-blind-friendly-ish region colours (Sasha Trubetskoy's list); region i gets PALETTE[i % 8].
PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
]
BACKGROUND, INK, MUTED = (255, 255, 255), (20, 20, 20), (110, 110, 110)
BOX_WIDTH = 2  # px; the outline straddles the box edge (1 px each side)
DASH = (6, 4)  # px on, px off
MARGIN, GAP = 10, 8
_LINE = 16  # px per legend line


@dataclass(frozen=True)
class RegionView:
    index: int  # position in the clip's regions
    region: Region
    boxes: np.ndarray  # (T, 4) normalised boxes drawn: the dataset's where visible, the ghost elsewhere
    visible: np.ndarray  # (T,) bool: the dataset's visibility (the box is used on that frame)
    status: str  # "used", or why the model never sees it

    @property
    def used(self) -> bool:
        return self.status == "used"


@dataclass(frozen=True)
class ClipView:
    """Everything drawn for one clip: the dataset's plan, its frames and boxes."""

    clip: Clip
    index: int  # the clip's index in the split's dataset (its item seed depends on it)
    plan: FramePlan
    frames: np.ndarray  # (T, H, W, 3) uint8 at the shown times
    frame_numbers: np.ndarray | None  # (T,) native frame index of each frame shown; None without the video
    regions: list[RegionView]
    how: str  # "train seed S epoch E" or "eval"
    source: str  # "decoded" or "from the frame cache"
    duration_s: float
    native_fps: float | None
    hold_s: float  # single-keyframe visibility (the dataset's option)


@dataclass(frozen=True)
class SheetLayout:
    """Where things are on a sheet, in sheet pixels: cell k's frame occupies `frames[k]` = (x, y, w, h)."""

    size: tuple[int, int]
    frames: list[tuple[int, int, int, int]]
    strip: tuple[int, int, int, int] | None = None


class _Plans:
    """Dataset view whose every item is the frame plan of `clip`: wrapped in `EpochSeededDataset`, the item
    index only chooses the RNG seed, so a one-clip dataset draws what item `index` of the whole split draws."""

    def __init__(self, dataset: ClipDataset, clip: Clip):
        self.dataset, self.clip = dataset, clip

    def __getitem__(self, index: int) -> FramePlan:
        return self.dataset.frame_plan(self.clip)


def plan_for(dataset: ClipDataset, clip: Clip, index: int, seed: int, epoch: int) -> FramePlan:
    """The plan training (dataset.train) or evaluation gives `clip` as item `index` of its split in `epoch`."""
    plans = _Plans(dataset, clip)
    if not dataset.train:
        return plans[index]
    return EpochSeededDataset(plans, seed)[(epoch, index)]


def clip_view(
    dataset: ClipDataset,
    clip: Clip,
    index: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    frame_size: tuple[int, int] | None = None,
) -> ClipView:
    """Plan, frames and boxes of `clip` as item `index` of `dataset`. `frame_size` (w, h) of decoded frames:
    None keeps the video's own size (a frame cache always gives its own)."""
    if clip.is_image:
        raise ValueError(f"{clip.sample_id}: {clip.video} is an image record; data show draws video clips")
    plan = plan_for(dataset, clip, index, seed, epoch)
    frames = dataset.read_frames(clip, plan.sampled_s, frame_size)
    has_video = clip.video.is_file()
    numbers = _native_numbers(clip.video, plan.shown_s) if has_video else None
    info = probe_video(clip.video) if has_video else None
    duration = info.duration_s if info is not None else plan.span[1]
    return ClipView(
        clip=clip,
        index=index,
        plan=plan,
        frames=frames,
        frame_numbers=numbers,
        regions=region_views(dataset, clip, plan.shown_s),
        how=f"train seed {seed} epoch {epoch}" if dataset.train else "eval (deterministic)",
        source="from the frame cache" if dataset.frame_cache is not None else "decoded",
        duration_s=duration,
        native_fps=info.fps if info is not None else None,
        hold_s=dataset.options.single_keyframe_hold_s,
    )


def _native_numbers(video: Path, times: np.ndarray) -> np.ndarray:
    """Native index of the frame shown at each time (the rule of `snap_to_frames`, as an index)."""
    frame_times = video_frame_times(video)
    k = np.searchsorted(frame_times, np.asarray(times) + 1e-6, side="right") - 1
    return np.clip(k, 0, len(frame_times) - 1)


def region_views(dataset: ClipDataset, clip: Clip, times: np.ndarray) -> list[RegionView]:
    """Each region's boxes at `times` by the dataset's own rule, plus the ghost box where it is not visible."""
    hold = dataset.options.single_keyframe_hold_s
    views = []
    for i, region in enumerate(clip.regions):
        boxes, visible = dataset.region_boxes(region, times)
        boxes = boxes.copy()
        for k in np.flatnonzero(~visible):
            boxes[k] = ghost_box(region.track, float(times[k]), hold)
        if i >= dataset.options.max_regions:
            status = f"dropped: over max_regions={dataset.options.max_regions}"
        elif not visible.any():
            status = "not used: visible on none of the sampled frames"
        else:
            status = "used"
        views.append(RegionView(i, region, boxes, visible, status))
    return views


def ghost_box(track: Track | None, time_s: float, hold_s: float) -> Box:
    """Where the track's keyframes put the box at `time_s` if it never stopped (drawn dashed, never used)."""
    if track is None:
        return (0.0, 0.0, 1.0, 1.0)
    through = Track(tuple(Keyframe(k.time_s, k.box, True) for k in track.keyframes))
    first, last = through.keyframes[0].time_s, through.keyframes[-1].time_s
    box = box_at(through, min(max(time_s, first), last), hold_s)
    assert box is not None  # a time clamped into one enabled segment is always inside it
    return box


# ------------------------------------------------------------------------------------------------ drawing


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _text_width(text: str, font) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def _wrap(text: str, font, width_px: int) -> list[str]:
    """Greedy word wrap to `width_px` (a long word without spaces is cut by characters)."""
    per_char = max(1.0, _text_width("abcdefghij", font) / 10)
    lines = []
    for paragraph in text.splitlines() or [""]:
        lines += textwrap.wrap(paragraph, max(8, int(width_px / per_char))) or [""]
    return lines


def _cell_size(frame: np.ndarray, clip: Clip, frame_height: int) -> tuple[int, int]:
    """(w, h) of a frame cell: the video's aspect ratio (a cached frame is squashed square; undone here)."""
    height, width = frame.shape[:2]
    if clip.video.is_file():
        info = probe_video(clip.video)
        width, height = info.width, info.height
    return max(1, round(frame_height * width / height)), frame_height


def _to_px(box, cell: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    x, y, w, h = cell
    return x + box[0] * w, y + box[1] * h, x + box[2] * w, y + box[3] * h


def draw_box(draw: ImageDraw.ImageDraw, xyxy, colour, dashed: bool, width: int = BOX_WIDTH) -> None:
    """A box outline centred on its edges (`width` px across); dashed: `DASH` px on/off along every edge."""
    x1, y1, x2, y2 = (round(v) for v in xyxy)
    half = width // 2
    if not dashed:
        draw.rectangle(
            [x1 - half, y1 - half, x2 + width - half - 1, y2 + width - half - 1], outline=colour, width=width
        )
        return
    on, off = DASH
    for (ax, ay), (bx, by) in (
        ((x1, y1), (x2, y1)),
        ((x2, y1), (x2, y2)),
        ((x2, y2), (x1, y2)),
        ((x1, y2), (x1, y1)),
    ):
        length = max(abs(bx - ax), abs(by - ay))
        for start in range(0, max(length, 1), on + off):
            end = min(start + on, length)
            fa, fb = start / max(length, 1), end / max(length, 1)
            draw.line(
                [(ax + fa * (bx - ax), ay + fa * (by - ay)), (ax + fb * (bx - ax), ay + fb * (by - ay))],
                fill=colour,
                width=width,
            )


def draw_sheet(
    view: ClipView, *, frame_height: int = 180, columns: int = 4, strip: bool = False
) -> tuple[Image.Image, SheetLayout]:
    """The contact sheet of one clip and where its frames lie on it (for tests and callers that annotate)."""
    small, body = _font(11), _font(13)
    cell_w, cell_h = _cell_size(view.frames[0], view.clip, frame_height)
    count = len(view.frames)
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    width = max(2 * MARGIN + columns * cell_w + (columns - 1) * GAP, 640)
    text_w = width - 2 * MARGIN
    header = _header_lines(view, body, text_w)
    legend = _legend_lines(view, body, small, text_w - 22)
    line_h, label_h = 17, 30
    header_h = len(header) * line_h + GAP
    grid_h = rows * (cell_h + label_h + GAP)
    legend_h = sum(_LINE * len(lines) + 4 for _, lines in legend) + GAP
    strip_h = _strip_height(view) if strip else 0
    height = MARGIN + header_h + grid_h + legend_h + strip_h + MARGIN
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    y = MARGIN
    for text, font, colour in header:
        draw.text((MARGIN, y), text, fill=colour, font=font)
        y += line_h
    y += GAP
    cells = []
    for k, frame in enumerate(view.frames):
        r, c = divmod(k, columns)
        cell = (MARGIN + c * (cell_w + GAP), y + r * (cell_h + label_h + GAP), cell_w, cell_h)
        cells.append(cell)
        _draw_frame(sheet, draw, view, k, frame, cell, small)
    y += grid_h
    for region_view, lines in legend:
        _draw_legend_entry(draw, region_view, lines, (MARGIN, y))
        y += _LINE * len(lines) + 4
    y += GAP
    strip_box = None
    if strip:
        strip_box = (MARGIN, y, text_w, strip_h)
        _draw_strip(draw, view, strip_box, small)
    return sheet, SheetLayout((width, height), cells, strip_box)


def _header_lines(view: ClipView, font, width: int) -> list[tuple[str, object, tuple]]:
    clip, (start, end) = view.clip, view.plan.span
    fps = f" @ {view.native_fps:.3g} fps" if view.native_fps else ""
    label = "abnormal" if clip.is_abnormal else "normal"
    facts = (
        f"{label} | span {start:.2f}-{end:.2f} s ({end - start:.2f} s of {view.duration_s:.2f} s{fps}) | "
        f"T={len(view.frames)} | {view.how} | frames {view.source}"
    )
    lines = [(line, font, INK) for line in _wrap(f"{clip.sample_id}   {clip.video_key}", font, width)]
    lines += [(line, font, MUTED) for line in _wrap(facts, font, width)]
    lines += [(line, font, INK) for line in _wrap(f"global caption: {clip.global_caption}", font, width)]
    return lines


def _legend_lines(view: ClipView, body, small, width: int) -> list[tuple[RegionView, list[tuple]]]:
    """Per region: its text lines (status and caption, then hard negatives) as (text, font, colour)."""
    entries = []
    for region_view in view.regions:
        region = region_view.region
        track = region.track
        where = "full frame" if track is None else f"{len(track.keyframes)} keyframe(s)"
        lines = [
            (line, body, INK)
            for line in _wrap(
                f"R{region_view.index} [{region_view.status}; {where}] {region.caption}", body, width
            )
        ]
        if region.hard_negatives:
            text = "hard negatives: " + " | ".join(region.hard_negatives)
            lines += [(line, small, MUTED) for line in _wrap(text, small, width)]
        entries.append((region_view, lines))
    return entries


def _draw_legend_entry(draw, region_view: RegionView, lines, origin) -> None:
    x, y = origin
    colour = PALETTE[region_view.index % len(PALETTE)]
    draw_box(draw, (x + 2, y + 3, x + 14, y + 13), colour, dashed=not region_view.used)
    for k, (text, font, fill) in enumerate(lines):
        draw.text((x + 22, y + _LINE * k), text, fill=fill, font=font)


def _draw_frame(sheet: Image.Image, draw, view: ClipView, k: int, frame: np.ndarray, cell, font) -> None:
    x, y, w, h = cell
    sheet.paste(Image.fromarray(frame).resize((w, h), Image.Resampling.BILINEAR), (x, y))
    for region_view in view.regions:
        visible = bool(region_view.visible[k]) and region_view.used
        colour = PALETTE[region_view.index % len(PALETTE)]
        draw_box(draw, _to_px(region_view.boxes[k], cell), colour, dashed=not visible)
    shown, sampled = frame_caption(view, k)
    draw.text((x, y + h + 3), shown, fill=INK, font=font)
    draw.text((x, y + h + 16), sampled, fill=MUTED, font=font)


def frame_caption(view: ClipView, k: int) -> tuple[str, str]:
    """The two lines under frame k: the time and native index of the frame shown, and the sampled time."""
    number = f"#{int(view.frame_numbers[k])}" if view.frame_numbers is not None else "# unknown (no video)"
    return (
        f"{k + 1}: {float(view.plan.shown_s[k]):.3f} s  frame {number}",
        f"sampled at {float(view.plan.sampled_s[k]):.3f} s",
    )


# ------------------------------------------------------------------------------------------------ strip


def _strip_height(view: ClipView) -> int:
    return 48 + 16 * len(view.regions) + 18


def _strip_axis(view: ClipView) -> tuple[float, float]:
    times = [view.plan.span[0], view.plan.span[1]]
    for region_view in view.regions:
        if region_view.region.track is not None:
            times += [k.time_s for k in region_view.region.track.keyframes]
    lo, hi = min(times), max(times)
    pad = 0.03 * max(hi - lo, 1e-3)
    return lo - pad, hi + pad


def _draw_strip(draw, view: ClipView, box, font) -> None:
    """Timeline: the span (grey bar), the video's end, per track its visible windows (light bars) and
    keyframes (ticks; an end-of-track keyframe is a taller tick), the T samples (vertical lines, a dot where
    the region is visible on that frame)."""
    x0, y0, w, h = box
    lo, hi = _strip_axis(view)
    label_w = 34

    def px(t: float) -> float:
        return x0 + label_w + (t - lo) / (hi - lo) * (w - label_w)

    top = y0 + 28  # title, then the sample numbers, then the span bar
    draw.text(
        (x0, y0), "timeline (s): span, keyframes |, visible windows, samples 1..T", fill=MUTED, font=font
    )
    draw.text((x0, top + 2), "span", fill=INK, font=font)
    draw.rectangle([px(view.plan.span[0]), top + 4, px(view.plan.span[1]), top + 12], fill=(200, 200, 200))
    if lo <= view.duration_s <= hi:
        for yy in range(int(top), int(y0 + h - 16), 4):
            draw.line([(px(view.duration_s), yy), (px(view.duration_s), yy + 2)], fill=(200, 0, 0))
        label_x = px(view.duration_s) + 3
        if label_x + _text_width("video end", font) > x0 + w:  # no room on the right: write it on the left
            label_x = px(view.duration_s) - 3 - _text_width("video end", font)
        draw.text((label_x, y0 + h - 14), "video end", fill=(200, 0, 0), font=font)
    rows_top = top + 18
    for k, t in enumerate(view.plan.shown_s):
        draw.line([(px(float(t)), top - 2), (px(float(t)), rows_top + 16 * len(view.regions))], fill=INK)
        draw.text((px(float(t)) - 3, top - 14), str(k + 1), fill=INK, font=font)
    for r, region_view in enumerate(view.regions):
        y = rows_top + 16 * r
        colour = PALETTE[region_view.index % len(PALETTE)]
        light = tuple(int(c + 0.6 * (255 - c)) for c in colour)
        draw.text((x0, y), f"R{region_view.index}", fill=colour, font=font)
        track = region_view.region.track
        if track is None:
            draw.rectangle([px(view.plan.span[0]), y + 4, px(view.plan.span[1]), y + 11], fill=light)
            continue
        for a, b in visible_windows(track, view.hold_s):
            draw.rectangle([px(a), y + 4, max(px(b), px(a) + 1), y + 11], fill=light)
        for keyframe in track.keyframes:
            tall = 0 if keyframe.enabled else 3
            draw.line(
                [(px(keyframe.time_s), y + 2 - tall), (px(keyframe.time_s), y + 13 + tall)],
                fill=colour,
                width=2,
            )
        for k, t in enumerate(view.plan.shown_s):
            if region_view.visible[k]:
                cx = px(float(t))
                draw.ellipse([cx - 3, y + 4, cx + 3, y + 10], fill=INK)
    axis_y = y0 + h - 14
    for tick in _ticks(lo, hi):
        draw.text((px(tick) - 8, axis_y), f"{tick:g}", fill=MUTED, font=font)


def _ticks(lo: float, hi: float, count: int = 8) -> list[float]:
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 6) for i in range(int((hi - first) / step) + 1)]


# ------------------------------------------------------------------------------------------------ mp4


def span_frames(video: Path, span: tuple[float, float]) -> int:
    """Native frames shown in [start, end): the frames `write_mp4` writes."""
    times = video_frame_times(video)
    return int(np.sum((times >= span[0] - 1e-6) & (times < span[1] - 1e-6)))


def write_mp4(dataset: ClipDataset, view: ClipView, path: str | Path, min_height: int = 240) -> Path:
    """Every native frame of the span, boxes drawn at its presentation time (solid where used, dashed ghost
    elsewhere), time and frame index in the corner; at the native fps, upscaled by an integer to >= min_height."""
    clip = view.clip
    if not clip.video.is_file():
        raise FileNotFoundError(
            f"{clip.sample_id}: --mp4 needs the video itself, {clip.video} does not exist"
        )
    info = probe_video(clip.video)
    scale = max(1, math.ceil(min_height / info.height))
    size = (2 * ((info.width * scale + 1) // 2), 2 * ((info.height * scale + 1) // 2))  # yuv420p: even sides
    start, end = view.plan.span
    font = _font(max(11, size[1] // 30))

    def annotated():
        for number, time_s, frame in iter_frames(clip.video, start_s=start, end_s=end, size=size):
            image = Image.fromarray(frame)
            draw = ImageDraw.Draw(image)
            for region_view in region_views(dataset, clip, np.array([time_s])):
                visible = bool(region_view.visible[0]) and region_view.index < dataset.options.max_regions
                colour = PALETTE[region_view.index % len(PALETTE)]
                draw_box(draw, _to_px(region_view.boxes[0], (0, 0, *size)), colour, dashed=not visible)
            draw.text(
                (4, 4),
                f"{time_s:.3f} s  frame {number}",
                fill=(255, 255, 0),
                font=font,
                stroke_width=1,
                stroke_fill=(0, 0, 0),
            )
            yield np.asarray(image)

    return write_video(path, annotated(), fps=info.fps)


# ------------------------------------------------------------------------------------------------ grid check


def on_grid(clip: Clip, from_fps: float, to_fps: float) -> Clip:
    """The clip with its keyframe frame numbers (time * from_fps) read on a grid of `to_fps` instead."""
    ratio = from_fps / to_fps

    def moved(region: Region) -> Region:
        if region.track is None:
            return region
        keyframes = tuple(dataclasses.replace(k, time_s=k.time_s * ratio) for k in region.track.keyframes)
        return dataclasses.replace(region, track=Track(keyframes))

    return dataclasses.replace(clip, regions=tuple(moved(r) for r in clip.regions))


def draw_grid_check(
    dataset: ClipDataset,
    clip: Clip,
    index: int,
    grid_fps: float,
    *,
    seed: int = 0,
    epoch: int = 0,
    frame_height: int = 180,
    strip: bool = True,
) -> Image.Image:
    """Side by side: the clip read on its annotation grid (`grid_fps`), and the same keyframe numbers read on
    the video's native fps. The right panel is always decoded (a frame cache holds only the configured spans)."""
    if not clip.video.is_file():
        raise FileNotFoundError(
            f"{clip.sample_id}: --grid-check needs the video itself, {clip.video} does not exist"
        )
    native = probe_video(clip.video).fps
    decoding = ClipDataset([clip], dataset.tokenizer, dataset.options, dataset.train, frame_cache=None)
    panels = []
    for source, fps, title in (
        (dataset, grid_fps, f"annotation grid {grid_fps:g} fps (as configured)"),
        (decoding, native, f"native grid {native:g} fps (keyframe numbers / {native:g})"),
    ):
        moved = on_grid(clip, grid_fps, fps)
        view = clip_view(source, moved, index, seed=seed, epoch=epoch)
        sheet, _ = draw_sheet(view, frame_height=frame_height, columns=2, strip=strip)
        panels.append(_titled(sheet, title))
    width = sum(p.width for p in panels) + GAP
    out = Image.new("RGB", (width, max(p.height for p in panels)), BACKGROUND)
    out.paste(panels[0], (0, 0))
    out.paste(panels[1], (panels[0].width + GAP, 0))
    return out


def _titled(image: Image.Image, title: str) -> Image.Image:
    out = Image.new("RGB", (image.width, image.height + 24), BACKGROUND)
    ImageDraw.Draw(out).text((MARGIN, 6), title, fill=(0, 0, 160), font=_font(15))
    out.paste(image, (0, 24))
    return out
