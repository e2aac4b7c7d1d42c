"""Spatial localization finds a planted anomaly, and its controls expose a map that finds objects instead.

A feature stub stands in for the model: the dense features of a patch are its mean RGB, the region head is the
identity, and the prompts are colour directions (normal: grey, anomaly: the planted colour). Frames are drawn
on the fly: two coloured squares on a grey background, each on its own box track.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fgclip.data.records import ABNORMAL, NORMAL, Clip, Keyframe, Region, Track
from fgclip.data.tracks import box_at
from fgclip.evaluation.localization import (
    LocalizationOptions,
    anomaly_map,
    box_iou,
    grid_boxes,
    localize,
    map_box,
    map_peak,
    twin_clips,
)
from fgclip.evaluation.zeroshot import PromptBank

SIZE, PATCH, SIDE = 64, 8, 0.25
RED, GREEN, GREY = (1.0, 0.1, 0.1), (0.1, 1.0, 0.1), (0.4, 0.4, 0.4)


class ColourFeatures(nn.Module):
    """encode_frames -> dense (N, 3, 8, 8) mean colour per patch; roi_projection the identity."""

    def __init__(self):
        super().__init__()
        self.roi_projection = nn.Linear(3, 3, bias=False)
        nn.init.eye_(self.roi_projection.weight)

    def encode_frames(self, pixels):
        return None, F.avg_pool2d(pixels, PATCH)


def _bank(anomaly_colour) -> PromptBank:
    prompts = F.normalize(torch.tensor([GREY, anomaly_colour]), dim=-1)
    return PromptBank(("Normal", "Red"), prompts, torch.tensor([0, 1]), logit_scale=50.0)


def _track(rng, start: float = 0.0, end: float = 2.0) -> Track:
    x, y = rng.uniform(0, 1 - SIDE, 2)
    dx, dy = rng.uniform(-0.2, 0.2, 2)
    x2, y2 = np.clip([x + dx, y + dy], 0, 1 - SIDE)
    return Track(
        (Keyframe(start, (x, y, x + SIDE, y + SIDE)), Keyframe(end, (x2, y2, x2 + SIDE, y2 + SIDE), False))
    )


def _pair(index: int, rng, actor_first: bool) -> tuple[Clip, Clip]:
    """An abnormal clip (actor + another object, both tracked) and its normal twin (same tracks)."""
    while True:  # the two objects never overlap (the control's question would have no answer)
        actor, other = _track(rng), _track(rng)
        if all(_apart(box_at(actor, t, 0), box_at(other, t, 0)) for t in np.linspace(0, 2, 9)):
            break
    regions = [Region("actor", actor, ABNORMAL), Region("other", other, NORMAL)]
    regions = regions if actor_first else regions[::-1]
    abnormal = Clip(
        f"m:{index}", Path(f"Red/Red{index:03d}.mp4"), f"Red/Red{index:03d}.mp4", "", tuple(regions), ABNORMAL
    )
    normal = Clip(f"m:n{index}", Path(f"Normal/Normal{index:03d}.mp4"), "", "", (), NORMAL)
    return abnormal, normal


def _apart(a, b) -> bool:
    return box_iou(a, b) == 0 and (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


def _reader(pairs, colours):
    """Draw frames: `colours(clip_is_abnormal, region_caption, rng)` gives each object's colour."""
    tracks = {c.video.stem: c.regions for c, _ in pairs}
    tracks.update({n.video.stem: a.regions for a, n in pairs})  # the twin: same objects on the same paths

    def read(clip, times):
        rng = np.random.default_rng(int(clip.video.stem[-3:]))  # a clip and its twin draw the same shades
        frames = torch.tensor(GREY).view(1, 3, 1, 1).repeat(len(times), 1, SIZE, SIZE)
        for n, t in enumerate(times):
            for region in tracks[clip.video.stem]:
                colour = torch.tensor(colours(clip.is_abnormal, region.caption, rng))
                x1, y1, x2, y2 = (round(v * SIZE) for v in box_at(region.track, float(t), 0.5))
                frames[n, :, y1:y2, x1:x2] = colour.view(3, 1, 1)
        return frames, np.asarray(times, dtype=float)

    return read


def _run(colours, anomaly_colour, count=24):
    rng = np.random.default_rng(0)
    pairs = [_pair(i, rng, actor_first=i % 2 == 0) for i in range(count)]
    clips = [c for pair in pairs for c in pair]
    twins = twin_clips(clips, {n.video.stem: a.video.stem for a, n in pairs})
    return localize(ColourFeatures(), clips, _reader(pairs, colours), _bank(anomaly_colour), twins=twins)


def test_it_finds_a_planted_anomaly_and_the_controls_confirm_it():
    """The actor turns red only in the abnormal video (the event); everything else is green."""
    report = _run(lambda abnormal, caption, _: RED if abnormal and caption == "actor" else GREEN, RED)
    assert report["frames"] == 24 * 4 and report["pointing_chance"] == pytest.approx(SIDE**2, abs=1e-6)
    # the map's resolution (stride 1/8) puts the peak just outside a box's edge now and then
    assert report["pointing"] >= 0.8 > 10 * report["pointing_chance"]
    assert report["iou"] > 0.4 > report["iou_chance"]
    assert report["twin_frames"] == 96 and report["twin_pointing"] <= 0.3  # calm twin: not there
    assert report["object_frames"] == 96 and report["object_choice"] == 1.0
    assert report["object_choice_chance"] == 0.5 and report["per_class_pointing"]["Red"] >= 0.8


def test_controls_read_at_chance_on_an_object_not_anomaly_pattern():
    """Every object is red in both videos, in a shade drawn afresh each frame: the map finds objects, not the
    event -- as often at the same place in the calm twin, and picking the actor among the objects by chance."""
    report = _run(lambda abnormal, caption, rng: (rng.uniform(0.6, 1.0), 0.1, 0.1), RED)
    assert report["pointing"] > 0.3  # it points at an object, often the actor ...
    assert report["twin_pointing"] == report["pointing"]  # ... exactly as often in the calm twin
    assert abs(report["object_choice"] - report["object_choice_chance"]) <= 0.12  # and picks one at random


def test_map_geometry_known_answers():
    options = LocalizationOptions(box_fraction=0.5, stride_fraction=0.5, map_size=4)
    grid = grid_boxes(options)
    assert grid.tolist() == [[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 0.5, 1], [0.5, 0.5, 1, 1]]
    heat = anomaly_map(torch.tensor([0.0, 0.0, 0.0, 1.0]), grid, 4)
    assert heat[3, 3] == 1 and heat[0, 0] == 0 and map_peak(heat) == (0.625, 0.625)
    assert map_box(heat, 0.5) == (0.5, 0.5, 1.0, 1.0)
    assert box_iou((0, 0, 0.5, 0.5), (0.25, 0.25, 0.75, 0.75)) == pytest.approx(1 / 7)
    assert (
        len(grid_boxes(LocalizationOptions(box_fraction=0.3, stride_fraction=0.25))) == 16
    )  # last touches 1


def test_frame_maps_and_the_overlay_show_the_planted_anomaly():
    from fgclip.evaluation.localization import frame_anomaly_maps, overlay_map

    frames = torch.tensor(GREY).view(1, 3, 1, 1).repeat(1, 1, SIZE, SIZE)
    frames[0, :, 40:56, 8:24] = torch.tensor(RED).view(3, 1, 1)  # red square at x 8-24, y 40-56 px
    heat = frame_anomaly_maps(ColourFeatures(), frames, _bank(RED))[0]  # (32, 32)
    x, y = map_peak(heat)
    assert 8 / SIZE <= x <= 24 / SIZE and 40 / SIZE <= y <= 56 / SIZE
    image = np.full((64, 64, 3), 100, np.uint8)
    shown = overlay_map(image, heat.numpy())
    assert shown[48, 16, 0] > 150 and (shown[8, 48] == image[8, 48]).all()  # red on the anomaly only
