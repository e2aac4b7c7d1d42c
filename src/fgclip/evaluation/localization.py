"""Spatial anomaly localization: where in the frame the model puts the anomaly (DESIGN §8).

For every frame inside an annotated abnormal track (a region with an abnormal label and a box track, in any
manifest format the project reads), an anomaly map over the frame is built from the dense features:

- a grid of boxes (side `box_fraction` of the frame, stride `stride_fraction`) is RoIAligned on the dense grid
  and projected by the region head, exactly as training pools a region box, and each box is scored against
  the region prompts (its anomaly probability: the mass of the anomaly classes);
- each cell of a `map_size` x `map_size` map takes the mean score of the boxes covering its centre.

Why a grid of boxes and not the region head at each patch: the region head was trained on RoIAligned boxes of
object size (several patches averaged), so a single patch's feature lies off the distribution it learned;
a grid of boxes of about an object's size asks the head the question it was trained on.

Metrics, each beside its chance level:
- pointing game: the map's maximum lies inside the annotated box. Chance: the box's share of the frame (a
  uniformly random point).
- IoU of the box around the thresholded map (cells >= min + threshold * (max - min)) with the annotated box.
  Chance: the box's share of the frame (the IoU of "the whole frame").
- controls that separate "finds the anomaly" from "finds an object" (STYLE 11):
  - twin: the same box, at the same time, in the matched normal video (same objects and paths, no event);
    a map that points at the object whatever it does reads as high there as in the abnormal video;
  - object choice: among the boxes of every object visible in the frame (the clip's other tracked regions),
    the one the region head scores highest is the anomalous one. Chance: 1 / (number of objects).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fgclip.data.classes import UNKNOWN_ANOMALY_CLASS, clip_class_index
from fgclip.data.dataset import to_pixel_values
from fgclip.data.records import ABNORMAL, Box, Clip
from fgclip.data.tracks import box_at, visible_windows
from fgclip.evaluation.zeroshot import PromptBank, anomaly_scores
from fgclip.model.roi_align import roi_align

# (clip, times (T,)) -> (T, 3, H, W) pixel values of the frames shown at `times`, and their times (T,)
FrameReader = Callable[[Clip, np.ndarray], tuple[torch.Tensor, np.ndarray]]


@dataclass(frozen=True)
class LocalizationOptions:
    box_fraction: float = 0.25  # grid box side, as a fraction of the frame side
    stride_fraction: float = 0.125  # grid stride, as a fraction of the frame side
    map_size: int = 32  # cells per side of the anomaly map
    threshold: float = 0.5  # IoU: cells at or above min + threshold * (max - min) of the map
    frames_per_track: int = 4  # frames per visible window of each abnormal track (bin centres)
    hold_s: float = 0.5  # a single-keyframe track is visible this long on either side of it

    def __post_init__(self):
        if not 0 < self.box_fraction <= 1 or not 0 < self.stride_fraction <= 1:
            raise ValueError("localization: box_fraction and stride_fraction must be in (0, 1]")
        if self.map_size < 2 or self.frames_per_track < 1 or not 0 <= self.threshold < 1:
            raise ValueError("localization: map_size >= 2, frames_per_track >= 1, threshold in [0, 1)")


def grid_boxes(options: LocalizationOptions) -> torch.Tensor:
    """(G, 4) normalised boxes of side box_fraction at every stride_fraction step, covering the frame."""
    side, stride = options.box_fraction, options.stride_fraction
    starts = torch.arange(0.0, 1.0 - side + 1e-6, stride)
    if starts[-1] < 1.0 - side - 1e-6:  # the last box touches the far border
        starts = torch.cat([starts, torch.tensor([1.0 - side])])
    y, x = torch.meshgrid(starts, starts, indexing="ij")
    return torch.stack([x, y, x + side, y + side], -1).view(-1, 4)  # (G, 4)


@torch.no_grad()
def box_anomaly_scores(
    model, pixel_values: torch.Tensor, boxes: list[torch.Tensor], bank: PromptBank, rule: str
) -> list[torch.Tensor]:
    """Anomaly probability of each box of each frame: pixel_values (N, 3, H, W), boxes[n] (G_n, 4) -> [(G_n,)].

    Boxes are RoIAligned on the frame's dense features and projected by the region head, as in training.
    """
    device = next(model.parameters()).device
    _, dense = model.encode_frames(pixel_values.to(device))  # (N, Cv, h, w)
    grid_h, grid_w = dense.shape[-2:]
    scale = torch.tensor([grid_w, grid_h, grid_w, grid_h], dtype=torch.float32)
    rois = torch.cat(
        [torch.cat([torch.full((len(b), 1), float(n)), b.float() * scale], 1) for n, b in enumerate(boxes)]
    ).to(dense.device)  # (sum G_n, 5)
    pooled = roi_align(dense.float(), rois, (1, 1), 1.0, -1, True).flatten(1)  # (sum G_n, Cv)
    projection = model.roi_projection
    embeds = F.normalize(projection(pooled.to(projection.weight.dtype)).float(), dim=-1)  # (sum G_n, D)
    scores = anomaly_scores(bank.class_probabilities(embeds, rule)).float().cpu()  # (sum G_n,)
    return list(scores.split([len(b) for b in boxes]))


def anomaly_map(scores: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size) map: each cell the mean score of the boxes (G, 4) covering its centre (scores (G,))."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # (S,)
    inside_x = (boxes[:, 0:1] <= centres) & (centres <= boxes[:, 2:3])  # (G, S)
    inside_y = (boxes[:, 1:2] <= centres) & (centres <= boxes[:, 3:4])  # (G, S)
    cover = (inside_y.unsqueeze(2) & inside_x.unsqueeze(1)).float()  # (G, S_y, S_x)
    total = torch.einsum("g,gyx->yx", scores.float(), cover)
    return total / cover.sum(0).clamp(min=1)  # (S, S)


def map_peak(heat: torch.Tensor) -> tuple[float, float]:
    """(x, y) normalised centre of the map's maximum cell (the first in row-major order on ties)."""
    size = heat.shape[0]
    row, col = divmod(int(heat.flatten().argmax()), size)
    return (col + 0.5) / size, (row + 0.5) / size


def map_box(heat: torch.Tensor, threshold: float) -> Box:
    """The box around every cell at or above min + threshold * (max - min), in normalised coordinates."""
    size = heat.shape[0]
    low, high = float(heat.min()), float(heat.max())
    rows, cols = (heat >= low + threshold * (high - low)).nonzero(as_tuple=True)
    return (
        float(cols.min()) / size,
        float(rows.min()) / size,
        float(cols.max() + 1) / size,
        float(rows.max() + 1) / size,
    )


def box_iou(a: Box, b: Box) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def box_area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


@dataclass(frozen=True)
class TrackFrame:
    """One frame inside an annotated abnormal track: the time asked for, and the region it belongs to."""

    clip: Clip
    region_index: int
    time_s: float


def track_frames(clips: Sequence[Clip], options: LocalizationOptions) -> list[TrackFrame]:
    """`frames_per_track` bin centres in each visible window of each abnormal region with a track."""
    frames = []
    for clip in clips:
        for index, region in enumerate(clip.regions):
            if region.label != ABNORMAL or region.track is None:
                continue
            for start, end in visible_windows(region.track, options.hold_s):
                offsets = (np.arange(options.frames_per_track) + 0.5) / options.frames_per_track
                frames += [TrackFrame(clip, index, float(start + o * (end - start))) for o in offsets]
    return frames


@dataclass
class _Tally:
    """Running sums of one metric family."""

    hits: list[float] = field(default_factory=list)
    ious: list[float] = field(default_factory=list)
    areas: list[float] = field(default_factory=list)

    def add(self, hit: bool, iou: float, area: float) -> None:
        self.hits.append(float(hit))
        self.ious.append(iou)
        self.areas.append(area)


def localize(
    model,
    clips: Sequence[Clip],
    read: FrameReader,
    bank: PromptBank,
    *,
    twins: dict[str, Clip] | None = None,
    options: LocalizationOptions = LocalizationOptions(),
    rule: str = "softmax_sum",
) -> dict:
    """Pointing game and map-box IoU over every test frame, with chance levels and controls (module doc).

    `read(clip, times)` returns the frames shown at `times` and their times; `twins` maps an abnormal clip's
    video stem to its matched normal clip (the synthetic benchmark's twin), where there is one.
    """
    grid = grid_boxes(options)
    main, twin, per_class = _Tally(), _Tally(), {}
    choice_hits, choice_chance = [], []
    frames_by_clip: dict[str, list[TrackFrame]] = {}
    for frame in track_frames(clips, options):
        frames_by_clip.setdefault(frame.clip.sample_id, []).append(frame)
    for frames in frames_by_clip.values():
        clip = frames[0].clip
        pixels, shown = read(clip, np.array([f.time_s for f in frames]))
        boxes = [
            box_at(clip.regions[f.region_index].track, float(t), options.hold_s)
            for f, t in zip(frames, shown, strict=True)
        ]
        keep = [i for i, box in enumerate(boxes) if box is not None]  # the shown frame may precede the track
        if not keep:
            continue
        objects = [_object_boxes(clip, float(shown[i]), options.hold_s) for i in keep]
        scores = box_anomaly_scores(
            model, pixels[keep], [torch.cat([grid, o[1]]) for o in objects], bank, rule
        )
        name = _class_name(clip, bank.classes)
        for n, i in enumerate(keep):
            target = boxes[i]
            heat = anomaly_map(scores[n][: len(grid)], grid, options.map_size)
            hit, iou = _read_map(heat, target, options.threshold)
            main.add(hit, iou, box_area(target))
            per_class.setdefault(name, _Tally()).add(hit, iou, box_area(target))
            regions, object_boxes = objects[n]
            if len(regions) >= 2:
                chosen = regions[int(scores[n][len(grid) :].argmax())]
                choice_hits.append(float(chosen == frames[i].region_index))
                choice_chance.append(1.0 / len(regions))
        partner = (twins or {}).get(clip.video.stem)
        if partner is not None:
            twin_pixels, _ = read(partner, shown[keep])
            twin_scores = box_anomaly_scores(model, twin_pixels, [grid] * len(keep), bank, rule)
            for n, i in enumerate(keep):
                heat = anomaly_map(twin_scores[n], grid, options.map_size)
                twin.add(*_read_map(heat, boxes[i], options.threshold), box_area(boxes[i]))
    return _report(main, twin, per_class, choice_hits, choice_chance, options)


def _object_boxes(clip: Clip, time_s: float, hold_s: float) -> tuple[list[int], torch.Tensor]:
    """Indices and boxes (K, 4) of the clip's tracked regions visible at `time_s` (every object's box)."""
    regions, boxes = [], []
    for index, region in enumerate(clip.regions):
        box = box_at(region.track, time_s, hold_s) if region.track is not None else None
        if box is not None:
            regions.append(index)
            boxes.append(box)
    return regions, torch.tensor(boxes, dtype=torch.float32).view(-1, 4)


def _read_map(heat: torch.Tensor, target: Box, threshold: float) -> tuple[bool, float]:
    return inside(map_peak(heat), target), box_iou(map_box(heat, threshold), target)


def _class_name(clip: Clip, classes: tuple[str, ...]) -> str:
    index = clip_class_index(clip, classes)
    return "unknown" if index == UNKNOWN_ANOMALY_CLASS else classes[index]


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _report(main, twin, per_class, choice_hits, choice_chance, options) -> dict:
    chance = _mean(main.areas)
    report = {
        "frames": len(main.hits),
        "pointing": _mean(main.hits),
        "pointing_chance": chance,
        "iou": _mean(main.ious),
        "iou_chance": chance,  # the IoU of the whole frame with the box
        "twin_frames": len(twin.hits),
        "twin_pointing": _mean(twin.hits),  # same box, same time, matched normal video
        "twin_iou": _mean(twin.ious),
        "object_frames": len(choice_hits),
        "object_choice": _mean(choice_hits),
        "object_choice_chance": _mean(choice_chance),
        "per_class_pointing": {name: _mean(t.hits) for name, t in sorted(per_class.items())},
        "settings": {
            "map": "grid of RoIAligned boxes through the region head, scored against the region prompts",
            "box_fraction": options.box_fraction,
            "stride_fraction": options.stride_fraction,
            "map_size": options.map_size,
            "threshold": options.threshold,
            "frames_per_track": options.frames_per_track,
        },
    }
    return report


@torch.no_grad()
def frame_anomaly_maps(
    model,
    pixel_values: torch.Tensor,
    bank: PromptBank,
    options: LocalizationOptions = LocalizationOptions(),
    rule: str = "softmax_sum",
) -> torch.Tensor:
    """(N, 3, H, W) frames as the model takes them -> (N, S, S) anomaly maps (probabilities, not rescaled)."""
    grid = grid_boxes(options)
    scores = box_anomaly_scores(model, pixel_values, [grid] * len(pixel_values), bank, rule)
    return torch.stack([anomaly_map(s, grid, options.map_size) for s in scores])


def overlay_map(frame: np.ndarray, heat: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """A frame (H, W, 3) uint8 with an anomaly map (S, S) blended in red, rescaled to the frame's own min..max
    (where the model puts the anomaly, as the pointing game reads it; say the range beside the picture: an
    uncalibrated model's map can be high everywhere)."""
    rows = (np.arange(frame.shape[0]) * heat.shape[0]) // frame.shape[0]
    cols = (np.arange(frame.shape[1]) * heat.shape[1]) // frame.shape[1]
    span = float(heat.max() - heat.min())
    relative = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    alpha = strength * relative[rows][:, cols][..., None]  # (H, W, 1)
    red = np.array([255.0, 0.0, 0.0])
    return (frame * (1 - alpha) + red * alpha).round().astype(np.uint8)


def dataset_reader(dataset) -> FrameReader:
    """Frames of a `ClipDataset`'s clips as it feeds them to the model (its size, its frame cache)."""
    size = (dataset.options.image_size, dataset.options.image_size)

    def read(clip: Clip, times: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        shown = dataset.frames.shown_times(clip.video, times)
        return to_pixel_values(dataset.read_frames(clip, times, size)), shown

    return read


def twin_clips(clips: Sequence[Clip], twins: dict[str, str]) -> dict[str, Clip]:
    """{abnormal video stem: its normal twin's clip} from a {normal stem: abnormal stem} mapping (the synthetic
    benchmark's meta.json `twins`), for the pairs whose normal video is among `clips`."""
    by_stem = {Path(clip.video).stem: clip for clip in clips if not clip.is_abnormal}
    return {abnormal: by_stem[normal] for normal, abnormal in twins.items() if normal in by_stem}
