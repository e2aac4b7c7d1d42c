"""Where a clip's frames come from: the annotation grid -> native frames, the frame cache, images, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from stand_ins import index_video, read_index

from fgclip.data.dataset import CLIP_MEAN, CLIP_STD, ClipDataset, SamplingOptions
from fgclip.data.formats import load_manifest
from fgclip.data.formats.cliplist import read_clip_list
from fgclip.data.frame_cache import FrameCache, FrameCacheError, FrameCacheMiss
from fgclip.data.paths import VideoResolver
from fgclip.data.text import CaptionTokenizer, build_word_tokenizer
from fgclip.data.video import VideoError, decode_frames
from fgclip.synthetic import synth_vocabulary
from fgclip.tools.cache_clips import cache_clips

SIZE = 64
NATIVE_FPS, ANNOTATION_FPS = 30.0, 25.0


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    index_video(root / "v30.mp4", seconds=10.0, fps=NATIVE_FPS, size=SIZE)  # native frame i shows i
    return root


@pytest.fixture(scope="module")
def tokenizer():
    return CaptionTokenizer(build_word_tokenizer(synth_vocabulary()))


def _entry(frames: list[int]) -> dict:
    """An abnormal entry with one single-keyframe region per annotation frame (25-fps grid)."""
    return {
        "video": "v30.mp4",
        "global_caption": "a red circle falls",
        "region_captions": ["a red circle falls"] * len(frames),
        "box_infos": [[{"frame": f, "bbox": [0.1, 0.1, 0.9, 0.9]}] for f in frames],
        "timestamps": None,
    }


def _manifest(root, entries, name="m.json"):
    path = root / name
    path.write_text(json.dumps(entries))
    return read_clip_list(path, VideoResolver(root))


def _native_indices(pixel_values: torch.Tensor) -> list[int]:
    """(T, 3, H, W) normalised pixels -> the native frame index each frame shows."""
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    images = ((pixel_values * std + mean) * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return [read_index(image) for image in images]


@pytest.mark.parametrize("frame", [1, 5, 7, 60, 123, 200, 249])
def test_annotation_frame_decodes_native_frame_round_down_f_over_25_times_30(root, frame):
    (clip,) = _manifest(root, [_entry([frame])])
    time_s = clip.regions[0].track.keyframes[0].time_s
    assert time_s == frame / ANNOTATION_FPS
    (image,) = decode_frames(clip.video, [time_s], size=(SIZE, SIZE))
    assert read_index(image) == (frame * 30) // 25  # floor(f / 25 * 30), exact in integers


def test_dataset_shows_each_far_apart_region_on_its_own_native_frame(root, tokenizer):
    clips = _manifest(root, [_entry([60, 200])])  # 2.4 s and 8.0 s: native frames 72 and 240
    # Span [0, 10] s, uniform eval times 1.25, 3.75, 6.25, 8.75 s: neither +-0.5 s window is hit, so both
    # regions get a reserved frame at their keyframe.
    options = SamplingOptions(num_frames=4, image_size=SIZE, context_s=5.0)
    item = ClipDataset(clips, tokenizer, options, train=False)[0]
    shown = _native_indices(item["pixel_values"])
    visible = item["region_box_mask"]  # (T, R)
    assert item["dropped_regions"] == 0 and visible.shape == (4, 2)
    assert [shown[t] for t in range(4) if visible[t, 0]] == [72]
    assert [shown[t] for t in range(4) if visible[t, 1]] == [240]
    assert shown == sorted(shown)  # frames stay in time order


def test_training_items_keep_every_region_visible(root, tokenizer):
    clips = _manifest(root, [_entry([10, 120, 240])])
    options = SamplingOptions(num_frames=4, image_size=SIZE, context_s=1.0)
    dataset = ClipDataset(clips, tokenizer, options, train=True)
    torch.manual_seed(0)
    for _ in range(5):
        item = dataset[0]
        assert item["dropped_regions"] == 0 and bool(item["region_box_mask"].any(0).all())


def test_frame_cache_serves_the_dataset_and_misses_fail_loudly(root, tokenizer, tmp_path):
    clips = _manifest(root, [_entry([60, 200])])
    options = SamplingOptions(num_frames=4, image_size=SIZE, context_s=0.5)
    cache = FrameCache(tmp_path / "cache", size=(SIZE, SIZE), cache_fps=0)  # every native frame: exact times
    summary = cache_clips(clips, cache, options)
    assert summary.videos == 1 and summary.frames == int((200 - 60) / 25 * 30) + 1 + 2 * 30  # span +-1 s
    decoded = ClipDataset(clips, tokenizer, options, train=False)[0]
    cached = ClipDataset(clips, tokenizer, options, train=False, frame_cache=cache)[0]
    assert _native_indices(cached["pixel_values"]) == _native_indices(decoded["pixel_values"])
    assert torch.equal(cached["region_box_mask"], decoded["region_box_mask"])
    # A wider span than the one cached: the first time outside it is an error naming video and time.
    wider = ClipDataset(
        clips, tokenizer, SamplingOptions(4, SIZE, context_s=3.0), train=False, frame_cache=cache
    )
    with pytest.raises(FrameCacheMiss, match=r"v30\.mp4: time \d+\.\d+ s lies outside every cached span"):
        wider[0]
    other = _manifest(root, [dict(_entry([60]), video="other.mp4")], "other.json")
    with pytest.raises(FileNotFoundError, match=r"(?s)1 video\(s\)/image\(s\) not found.*other\.mp4"):
        ClipDataset(other, tokenizer, options, train=False)  # without a cache the video must exist


def test_frame_cache_needs_no_video_and_refuses_uncached_ones(root, tokenizer, tmp_path):
    video = index_video(tmp_path / "gone.mp4", seconds=4.0, fps=NATIVE_FPS, size=SIZE)
    (clip,) = _manifest(tmp_path, [dict(_entry([25]), video="gone.mp4")])
    options = SamplingOptions(num_frames=2, image_size=SIZE, context_s=0.5)
    cache = FrameCache(tmp_path / "cache", size=(SIZE, SIZE), cache_fps=8)
    cache_clips([clip], cache, options)
    video.unlink()
    item = ClipDataset([clip], tokenizer, options, train=False, frame_cache=cache)[0]
    assert item["pixel_values"].shape == (2, 3, SIZE, SIZE) and item["dropped_regions"] == 0
    (uncached,) = _manifest(root, [_entry([25])])
    with pytest.raises(FrameCacheMiss, match="1 video\\(s\\) have no cached frames"):
        ClipDataset([uncached], tokenizer, options, train=False, frame_cache=cache)


def test_a_dataset_over_a_stale_frame_cache_is_refused_at_construction(tokenizer, tmp_path):
    """Training stops before step 1 naming the changed video, instead of training on its old frames."""
    video = index_video(tmp_path / "v.mp4", seconds=4.0, fps=NATIVE_FPS, size=SIZE)
    (clip,) = _manifest(tmp_path, [dict(_entry([25]), video="v.mp4")])
    options = SamplingOptions(num_frames=2, image_size=SIZE, context_s=0.5)
    cache = FrameCache(tmp_path / "cache", size=(SIZE, SIZE), cache_fps=8)
    cache_clips([clip], cache, options)
    data = bytearray(video.read_bytes())
    data[-200:-100] = bytes(255 - b for b in data[-200:-100])  # other bytes, the same size, a new mtime
    video.write_bytes(bytes(data))
    with pytest.raises(FrameCacheError) as error:
        ClipDataset([clip], tokenizer, options, train=False, frame_cache=cache)
    message = str(error.value)
    assert "1 video(s) changed since their frames were cached" in message and str(video) in message
    assert "fgclip data cache" in message


def test_corrupt_video_is_an_error_naming_it(root, tokenizer, tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"\x00not a video" * 100)
    (clip,) = _manifest(tmp_path, [dict(_entry([25]), video="bad.mp4")])
    dataset = ClipDataset([clip], tokenizer, SamplingOptions(num_frames=2, image_size=SIZE), train=False)
    with pytest.raises(VideoError, match="bad.mp4"):
        dataset[0]


def test_image_records_load_as_one_frame_clips(tmp_path, tokenizer):
    Image.fromarray(np.full((40, 80, 3), 200, np.uint8)).save(tmp_path / "img.png")
    records = [
        {
            "f_path": "img.png",
            "caption": "a red circle",
            "short_caption": "a circle",
            "bbox_info": [
                {"bbox": [0.25, 0.5, 0.75, 1.0, 0.9], "short_expr": "a red circle", "long_expr": "a big red circle",
                 "flag_short_neg": 1, "short_expr_negs": {"0": "a blue circle", "1": "a red square"}},
            ],
        }
    ]  # fmt: skip
    (tmp_path / "images.json").write_text(json.dumps(records))
    result = load_manifest(tmp_path / "images.json", VideoResolver(tmp_path))
    (clip,) = result.clips
    assert (
        result.format == "images"
        and clip.is_image
        and clip.regions[0].hard_negatives == ("a blue circle", "a red square")
    )
    item = ClipDataset([clip], tokenizer, SamplingOptions(image_size=SIZE), train=True)[0]
    assert item["pixel_values"].shape == (1, 3, SIZE, SIZE)
    assert item["region_box_mask"].tolist() == [[True]]
    assert item["region_boxes"][0, 0].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert len(item["hard_negative_ids"][0]) == 2
    bad = [dict(records[0], bbox_info=[{"bbox": [0.8, 0.1, 0.2, 0.5], "short_expr": "x"}])]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (error,) = load_manifest(tmp_path / "bad.json").errors
    assert (error.index, error.field) == (0, "bbox_info[0].bbox") and "inverted" in error.message
