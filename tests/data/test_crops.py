"""The field's 1 / 5 / 10 crops, each against a crop written out by hand."""

import numpy as np
import pytest

from fgclip.data.crops import CropSpec, frame_crops


def _frame(side: int) -> np.ndarray:
    """(side, side, 3) uint8: pixel (r, c) holds 10 r + c in every channel, so a crop names its rows/columns."""
    values = 10 * np.arange(side)[:, None] + np.arange(side)[None, :]  # (side, side)
    return np.repeat(values[:, :, None], 3, axis=2).astype(np.uint8)


def _values(rows, cols) -> np.ndarray:
    return np.array([[10 * r + c for c in cols] for r in rows], dtype=np.uint8)


# resize_side 5, crop_side 3: edge 2, centre offset round(1.0) = 1. Written out cell by cell.
HAND_5_TO_3 = [
    _values([0, 1, 2], [0, 1, 2]),  # 0 top-left
    _values([0, 1, 2], [2, 3, 4]),  # 1 top-right
    _values([2, 3, 4], [0, 1, 2]),  # 2 bottom-left
    _values([2, 3, 4], [2, 3, 4]),  # 3 bottom-right
    _values([1, 2, 3], [1, 2, 3]),  # 4 centre
    _values([0, 1, 2], [4, 3, 2]),  # 5 top-left of the mirror = mirrored top-right
    _values([0, 1, 2], [2, 1, 0]),  # 6 top-right of the mirror = mirrored top-left
    _values([2, 3, 4], [4, 3, 2]),  # 7 mirrored bottom-right
    _values([2, 3, 4], [2, 1, 0]),  # 8 mirrored bottom-left
    _values([1, 2, 3], [3, 2, 1]),  # 9 mirrored centre
]


@pytest.mark.parametrize("count", [5, 10])
def test_each_crop_equals_the_hand_computed_one(count):
    crops = frame_crops(_frame(5), CropSpec(count, crop_side=3, resize_side=5))  # (K, 3, 3, 3)
    assert crops.shape == (count, 3, 3, 3)
    for k in range(count):
        assert np.array_equal(crops[k, ..., 0], HAND_5_TO_3[k]), f"crop {k}:\n{crops[k, ..., 0]}"
        assert np.array_equal(crops[k, ..., 2], HAND_5_TO_3[k])


def test_centre_rounds_half_to_even_as_torchvision():
    # resize 6, crop 3: (6 - 3) / 2 = 1.5 -> round() = 2 (Python's round, as torchvision's center_crop)
    assert CropSpec(5, 3, 6).offsets()[4] == (2, 2, False)
    # resize 8, crop 3: 2.5 -> 2
    assert CropSpec(5, 3, 8).offsets()[4] == (2, 2, False)


def test_one_crop_is_the_resized_frame_and_batches_keep_their_axes():
    frames = np.stack([_frame(4), 255 - _frame(4)])[None]  # (1, 2, 4, 4, 3): a snippet of two frames
    assert np.array_equal(frame_crops(frames, CropSpec(1, 4, 4))[0], frames)
    crops = frame_crops(frames, CropSpec(10, 3, 4))  # (10, 1, 2, 3, 3, 3)
    assert crops.shape == (10, 1, 2, 3, 3, 3)
    assert np.array_equal(crops[1, 0, 1], (255 - _frame(4))[0:3, 1:4])


def test_field_sizes_and_bad_specs():
    assert CropSpec.field(10, 224) == CropSpec(10, 224, 256)
    assert CropSpec.field(1, 224) == CropSpec(1, 224, 224)
    with pytest.raises(ValueError, match="crops must be one of"):
        CropSpec(3, 224, 256)
    with pytest.raises(ValueError, match="frames are 5x5, the crops need 6x6"):
        frame_crops(_frame(5), CropSpec(5, 3, 6))
