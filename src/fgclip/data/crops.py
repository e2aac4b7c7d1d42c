"""The field's 1 / 5 / 10 crops of a frame, as feature-extraction scripts for VAD heads take them.

Frames are first resized (squashed, as every fgclip frame is) to a square of side `resize_side`; then

- **1 crop**: the resized frame itself, at `crop_side` (fgclip's single-view default: `resize_side ==
  crop_side`, nothing is cut away);
- **5 crops**: the four corners and the centre of the `resize_side` frame, each `crop_side` square,
  in the order `0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre`;
- **10 crops**: those five, then the same five positions taken from the horizontally mirrored frame
  (`5 + j` = crop j of the mirror). This is torchvision's `TenCrop(vertical_flip=False)` order, used by the
  I3D / CLIP extraction scripts whose features RTFM, MIST and VadCLIP read (`Name__0.npy` ... `Name__9.npy`).
  Note what it implies: crop 5 is the *mirror of the top-right corner* (the top-left of the mirrored frame),
  crop 6 the mirror of the top-left, 7 of the bottom-right, 8 of the bottom-left, 9 of the centre.

The centre's offset is `int(round((resize_side - crop_side) / 2))` on both axes (torchvision's
`center_crop`; Python rounds halves to even). `resize_side` defaults to `round(crop_side * 256 / 224)`, the
field's resize-256-crop-224 ratio (256 for a 224 model). VadCLIP has not released its extraction script, so
which of its ten files is which view is not documented there; its test list uses `__5`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CROP_COUNTS = (1, 5, 10)
FIELD_RESIZE_RATIO = 256 / 224  # resize to 256, crop 224 (I3D / CLIP feature extraction for VAD)
CROP_NAMES = (
    "top-left", "top-right", "bottom-left", "bottom-right", "centre",
    "mirrored top-left", "mirrored top-right", "mirrored bottom-left", "mirrored bottom-right", "mirrored centre",
)  # fmt: skip


@dataclass(frozen=True)
class CropSpec:
    """How many views of each frame are embedded, from frames resized to `resize_side` squares."""

    count: int
    crop_side: int
    resize_side: int

    def __post_init__(self):
        if self.count not in CROP_COUNTS:
            raise ValueError(f"crops must be one of {CROP_COUNTS}, got {self.count}")
        if self.count == 1 and self.resize_side != self.crop_side:
            raise ValueError(
                f"1 crop is the resized frame: resize_side must equal crop_side ({self.crop_side})"
            )
        if self.resize_side < self.crop_side:
            raise ValueError(f"resize_side {self.resize_side} is smaller than crop_side {self.crop_side}")

    @classmethod
    def field(cls, count: int, crop_side: int) -> CropSpec:
        """The field's sizes: 1 crop = the frame at `crop_side`; 5 / 10 crops cut from `crop_side * 256/224`."""
        resize = crop_side if count == 1 else int(round(crop_side * FIELD_RESIZE_RATIO))
        return cls(count, crop_side, resize)

    def offsets(self) -> list[tuple[int, int, bool]]:
        """(top, left, mirrored) of every crop, in the order of the module docstring."""
        edge = self.resize_side - self.crop_side
        centre = int(round(edge / 2))
        five = [(0, 0), (0, edge), (edge, 0), (edge, edge), (centre, centre)]
        views = [(top, left, False) for top, left in five]
        if self.count == 10:
            views += [(top, left, True) for top, left in five]
        return views[: self.count]

    def describe(self) -> dict:
        """What the feature metadata records about the crops."""
        return {
            "count": self.count,
            "resize_side": self.resize_side,
            "crop_side": self.crop_side,
            "order": [CROP_NAMES[k] for k in range(self.count)]
            if self.count > 1
            else ["whole resized frame"],
            "offsets_top_left": [[top, left] for top, left, _ in self.offsets()],
            "rule": "torchvision TenCrop order: crops 5-9 are crops 0-4 of the horizontally mirrored frame",
        }


def frame_crops(frames: np.ndarray, spec: CropSpec) -> np.ndarray:
    """(..., R, R, 3) frames resized to `spec.resize_side` -> (K, ..., C, C, 3) crops in `offsets()` order."""
    if frames.shape[-3:-1] != (spec.resize_side, spec.resize_side):
        raise ValueError(
            f"frames are {frames.shape[-3]}x{frames.shape[-2]}, the crops need {spec.resize_side}x{spec.resize_side}"
        )
    side = spec.crop_side
    mirrored = frames[..., :, ::-1, :]  # (..., R, R, 3) horizontal flip
    views = []
    for top, left, flip in spec.offsets():
        source = mirrored if flip else frames
        views.append(source[..., top : top + side, left : left + side, :])  # (..., C, C, 3)
    return np.stack(views)  # (K, ..., C, C, 3)
