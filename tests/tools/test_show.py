"""`fgclip data show` on videos whose content is known: a white rectangle moving 1 px per frame (its position
at every native frame is known), and stand-ins whose frames show their own index (tests/data/stand_ins.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from stand_ins import index_video, read_index, real_data_dir  # noqa: E402

from fgclip.cli import main  # noqa: E402
from fgclip.commands import build_parser  # noqa: E402
from fgclip.commands.data import show as data_show  # noqa: E402
from fgclip.data.dataset import CLIP_MEAN, CLIP_STD, ClipDataset, SamplingOptions  # noqa: E402
from fgclip.data.epochs import EpochSeededDataset  # noqa: E402
from fgclip.data.formats import load_manifest  # noqa: E402
from fgclip.data.paths import VideoResolver  # noqa: E402
from fgclip.data.text import CaptionTokenizer, build_word_tokenizer  # noqa: E402
from fgclip.data.video import decode_frames, video_frame_times, write_video  # noqa: E402
from fgclip.tools.show import (  # noqa: E402
    PALETTE,
    clip_view,
    draw_grid_check,
    draw_sheet,
    frame_caption,
    on_grid,
    span_frames,
    write_mp4,
)

W, H, FPS, FRAMES = 160, 120, 25.0, 75  # the moving-rectangle video: 3 s
OBJ_W, OBJ_H = 40, 30
CORNER = (120, 4, 150, 24)  # region 1: a fixed box (px), visible for the first second only


def object_px(n: int) -> tuple[int, int, int, int]:
    """The white rectangle's edges (x1, y1, x2, y2; x2/y2 exclusive) on native frame n."""
    return 10 + n, 10 + n, 10 + n + OBJ_W, 10 + n + OBJ_H


def moving_frame(n: int) -> np.ndarray:
    image = np.full((H, W, 3), 40, np.uint8)
    x1, y1, x2, y2 = object_px(n)
    image[y1:y2, x1:x2] = 255
    return image


def _norm(x1, y1, x2, y2) -> list[float]:
    return [x1 / W, y1 / H, x2 / W, y2 / H]


@pytest.fixture(scope="module")
def moving(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("moving")
    write_video(root / "moving.mp4", (moving_frame(n) for n in range(FRAMES)), FPS)
    track = [{"frame": n, "bbox": _norm(*object_px(n))} for n in (0, 25, 50, 74)]  # annotation grid = 25 fps
    corner = [{"frame": 0, "bbox": _norm(*CORNER)}, {"frame": 25, "bbox": _norm(*CORNER), "enabled": False}]
    entry = {
        "video": "moving.mp4",
        "global_caption": "a white box moves down right",
        "region_captions": ["a white box moves", "a corner marker"],
        "box_infos": [track, corner],
        "timestamps": None,
    }
    (root / "moving.json").write_text(json.dumps([entry]))
    return root


def _moving_dataset(root: Path, train: bool = True) -> ClipDataset:
    clips = load_manifest(root / "moving.json", VideoResolver(root)).clips
    return ClipDataset(clips, None, SamplingOptions(num_frames=6, context_s=0.0), train=train)


def _mask(image: np.ndarray, colour, tolerance: int = 40) -> np.ndarray:
    return (np.abs(image.astype(int) - np.array(colour)) < tolerance).all(-1)


def test_drawn_box_edges_fall_on_the_object_edges(moving):
    dataset = _moving_dataset(moving)
    view = clip_view(dataset, dataset.clips[0], 0, seed=3, epoch=1)
    sheet, layout = draw_sheet(view, frame_height=H)  # frames drawn at their native scale: cell px = frame px
    image = np.asarray(sheet)
    assert image.shape[:2] == layout.size[::-1]
    assert view.plan.span == pytest.approx((0.0, 74 / FPS))  # the track's extent (context 0)
    for k, (x, y, w, h) in enumerate(layout.frames):
        assert (w, h) == (W, H)
        cell = image[y : y + h, x : x + w]
        n = int(view.frame_numbers[k])
        assert n == round(view.plan.shown_s[k] * FPS)
        x1, y1, x2, y2 = object_px(n)
        # the frame shown is native frame n: the white object sits where frame n has it
        ys, xs = np.nonzero((cell > 180).all(-1))
        seen = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        assert np.abs(np.subtract(seen, (x1, y1, x2, y2))).max() <= 2
        # region 0's box (interpolated between keyframes 25 frames apart) is drawn on the object's edges: within
        # 1 px of where they are on frame n (the 2 px outline straddles the edge) and 2 px of where they are seen
        assert view.regions[0].visible[k]
        ys, xs = np.nonzero(_mask(cell, PALETTE[0]))
        drawn = xs.min(), ys.min(), xs.max(), ys.max()
        assert np.abs(np.subtract(drawn, (x1, y1, x2, y2))).max() <= 1
        assert np.abs(np.subtract(drawn, seen)).max() <= 2


def test_box_outside_its_visible_range_is_dashed(moving):
    dataset = _moving_dataset(moving)
    view = clip_view(dataset, dataset.clips[0], 0, seed=0, epoch=0)
    corner = view.regions[1]
    assert corner.used and corner.visible.any() and not corner.visible.all()
    np.testing.assert_array_equal(corner.visible, view.plan.shown_s <= 25 / FPS + 1e-6)
    sheet, layout = draw_sheet(view, frame_height=H)
    image = np.asarray(sheet)
    for k, (x, y, _, _) in enumerate(layout.frames):
        band = _mask(image[y + CORNER[1] - 2 : y + CORNER[1] + 2, x + CORNER[0] : x + CORNER[2]], PALETTE[1])
        covered = band.any(0).mean()  # share of the top edge's columns drawn
        if corner.visible[k]:
            assert covered > 0.95
        else:  # ghost: the box its keyframes would give (here the same place), dashed
            assert 0.35 < covered < 0.85


def _tokenizer(words: str) -> CaptionTokenizer:
    return CaptionTokenizer(build_word_tokenizer(words.split()))


def _item_frame_numbers(pixel_values: torch.Tensor) -> list[int]:
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    frames = ((pixel_values * std + mean) * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return [read_index(f) for f in frames]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    """Three clips of one 6 s stand-in (30 fps) whose frames show their native index."""
    root = tmp_path_factory.mktemp("indexed")
    index_video(root / "v.mp4", seconds=6.0, fps=30.0, size=64)
    entries = [
        {
            "video": "v.mp4",
            "global_caption": "a man falls",
            "region_captions": ["a man falls", "a man runs"],
            "box_infos": [
                [
                    {"frame": 25 * (i + 1), "bbox": [0.1, 0.1, 0.5, 0.5]},
                    {"frame": 25 * (i + 2), "bbox": [0.3, 0.2, 0.9, 0.8]},
                ],
                [{"frame": 110, "bbox": [0.5, 0.5, 0.7, 0.7]}],  # one keyframe: a 1 s window the samples miss
            ],
            "timestamps": None,
        }
        for i in range(3)
    ]
    (root / "m.json").write_text(json.dumps(entries))
    return root


@pytest.mark.parametrize("train, seed, epoch", [(True, 5, 0), (True, 5, 3), (False, 0, 0)])
def test_sheet_frames_are_the_ones_the_dataset_gives(indexed, train, seed, epoch):
    clips = load_manifest(indexed / "m.json", VideoResolver(indexed)).clips
    options = SamplingOptions(num_frames=4, image_size=64, context_s=1.0)
    dataset = ClipDataset(clips, _tokenizer("a man falls runs"), options, train=train)
    index = 2  # the item seed depends on the index: not the first clip
    item = EpochSeededDataset(dataset, seed)[(epoch, index)] if train else dataset[index]
    view = clip_view(dataset, clips[index], index, seed=seed, epoch=epoch)
    truth = _item_frame_numbers(item["pixel_values"])  # what the model is fed, read from its pixels
    assert view.frame_numbers.tolist() == truth
    assert [read_index(f) for f in view.frames] == truth  # the frames drawn
    assert [frame_caption(view, k)[0].split("frame #")[1] for k in range(4)] == [str(n) for n in truth]
    np.testing.assert_allclose(view.plan.shown_s, video_frame_times(clips[index].video)[truth])
    for r, region in enumerate(view.regions):  # both regions are used: the one-keyframe one got a frame
        assert region.used
        mask = item["region_box_mask"][:, r].numpy()
        np.testing.assert_array_equal(region.visible, mask)
        np.testing.assert_allclose(region.boxes[mask], item["region_boxes"][:, r].numpy()[mask], atol=1e-6)
    if train:  # another epoch draws other frames (the seed is really used)
        other = clip_view(dataset, clips[index], index, seed=seed, epoch=epoch + 1)
        assert other.frame_numbers.tolist() != truth


def test_mp4_has_the_span_native_frame_count_with_boxes_on_the_object(moving, tmp_path):
    dataset = _moving_dataset(moving, train=False)
    view = clip_view(dataset, dataset.clips[0], 0)
    path = write_mp4(dataset, view, tmp_path / "span.mp4")
    assert span_frames(dataset.clips[0].video, view.plan.span) == 74  # frames 0..73 in [0, 2.96) s
    times = video_frame_times(path)
    assert len(times) == 74
    n = 40
    (frame,) = decode_frames(path, [times[n]])
    assert frame.shape == (2 * H, 2 * W, 3)  # upscaled x2 to reach 240 px
    ys, xs = np.nonzero(_mask(frame, PALETTE[0], tolerance=60))
    x1, y1, x2, y2 = (2 * v for v in object_px(n))
    assert abs(xs.min() - x1) <= 3 and abs(xs.max() - x2) <= 3 and abs(ys.max() - y2) <= 3


def test_grid_check_reads_the_keyframes_on_the_native_fps(indexed):
    clips = load_manifest(indexed / "m.json", VideoResolver(indexed)).clips
    moved = on_grid(clips[0], 25.0, 30.0)
    assert moved.regions[0].track.keyframes[0].time_s == pytest.approx(25 / 30)  # frame 25 on a 30 fps grid
    dataset = ClipDataset(clips, None, SamplingOptions(num_frames=4), train=False)
    image = draw_grid_check(dataset, clips[0], 0, 25.0, frame_height=96)
    single, _ = draw_sheet(clip_view(dataset, clips[0], 0), frame_height=96, columns=2, strip=True)
    assert image.width >= 2 * single.width and image.height > single.height


def _show(*args: str) -> int:
    return main(["data", "show", *args])


def test_cli_writes_sheet_strip_mp4_and_grid_check(moving, tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(moving / "moving.json"), "--entry", "0", "--video-root", str(moving), "--context-s", "0"]
    assert _show(*args, "--out", str(out), "--frame-height", "120") == 0
    plain = Image.open(out / "moving_entry0_train_seed0_epoch0.png")
    assert _show(*args, "--out", str(out), "--strip", "--mp4", "--grid-check", "--frame-height", "120") == 0
    written = capsys.readouterr().out.split()
    names = sorted(Path(p).name for p in written)
    assert names == sorted(
        ["moving_entry0_train_seed0_epoch0.png"] * 2
        + ["moving_entry0_train_seed0_epoch0_span.mp4", "moving_entry0_train_seed0_epoch0_grid_check.png"]
    )
    with_strip = Image.open(out / "moving_entry0_train_seed0_epoch0.png")
    assert with_strip.width == plain.width and with_strip.height > plain.height + 50
    assert len(video_frame_times(out / "moving_entry0_train_seed0_epoch0_span.mp4")) == 74
    assert Image.open(out / "moving_entry0_train_seed0_epoch0_grid_check.png").width > 2 * 300


@pytest.mark.parametrize(
    "extra, message, code",
    [
        (["--entry", "7"], "no entry 7 (the manifest has entries 0-0)", 1),
        (["--video", "other.mp4"], "no clip of video 'other.mp4'", 1),
        (["--entry", "0", "--data.num_frames", "4"], "overrides need a YAML config", 2),
    ],
)
def test_cli_errors_for_a_missing_entry_or_video_name(moving, capsys, extra, message, code):
    assert _show(str(moving / "moving.json"), "--video-root", str(moving), *extra) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("fgclip data show: ") and message in err and "\n" not in err


def test_cli_error_for_a_missing_video(moving, tmp_path, capsys):
    assert _show(str(moving / "moving.json"), "--entry", "0", "--video-root", str(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert f"moving.json:0: video not found: {tmp_path / 'moving.mp4'}" in err and "--video-root" in err


def test_config_applies_root_remaps_grid_and_overrides(indexed, tmp_path, capsys):
    manifest = tmp_path / "m30.json"  # the same entries, with a `clips/` prefix remapped onto the root
    entries = json.loads((indexed / "m.json").read_text())
    manifest.write_text(json.dumps([{**e, "video": "clips/v.mp4"} for e in entries]))
    config = tmp_path / "c.yaml"
    config.write_text(
        "data:\n"
        f"  train_manifests: [{manifest}]\n"
        f"  video_root: /nowhere\n"
        f"  path_remaps: {{'clips/': '{indexed}/'}}\n"
        f"  manifest_annotation_fps: {{'{manifest}': 30}}\n"
        "train:\n  seed: 7\n"
    )
    argv = [
        "data",
        "show",
        str(config),
        "--entry",
        "1",
        "--data.num_frames",
        "3",
        "--out",
        str(tmp_path / "o"),
    ]
    args, rest = build_parser(argv).parse_known_args(argv)
    split = data_show._load_split(args, rest)
    clip = split.clips[data_show._choose(split, args)[0]]
    assert clip.video == indexed / "v.mp4" and split.seed == 7 and split.options.num_frames == 3
    assert clip.regions[0].track.keyframes[0].time_s == pytest.approx(50 / 30)  # frame 50 on the 30 fps grid
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().endswith("m30_entry1_train_seed7_epoch0.png")


def test_data_check_prints_the_show_command_of_flagged_entries(indexed, tmp_path, capsys):
    entries = json.loads((indexed / "m.json").read_text())
    entries[1]["box_infos"][1] = [{"frame": 400, "bbox": [0.5, 0.5, 0.7, 0.7]}]  # 16 s: past the 6 s video
    manifest = tmp_path / "late.json"
    manifest.write_text(json.dumps(entries))
    assert main(["data", "check", str(manifest), "--video-root", str(indexed)]) == 1
    out = capsys.readouterr().out
    command = f"fgclip data show {manifest} --entry 1 --video-root {indexed}"
    assert "look at the 1 flagged entries" in out and f"  {command}\n" in out
    assert main(command.split()[1:] + ["--strip", "--out", str(tmp_path / "o")]) == 0  # and it draws it


def test_data_check_of_a_config_prints_a_show_command_of_the_same_config(indexed, tmp_path, capsys):
    """Check and show read through the one `data` section: the printed command names the config, not flags."""
    entries = json.loads((indexed / "m.json").read_text())
    entries[1]["box_infos"][1] = [{"frame": 400, "bbox": [0.5, 0.5, 0.7, 0.7]}]  # 16 s: past the 6 s video
    manifest = tmp_path / "late.json"
    manifest.write_text(json.dumps(entries))
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"data": {"train_manifests": [str(manifest)], "video_root": str(indexed)}}))
    assert main(["data", "check", str(config), "--data.num_frames", "3"]) == 1
    out = capsys.readouterr().out
    command = f"fgclip data show {config} --entry 1 --manifest {manifest} --split train --data.num_frames 3"
    assert f"  {command}\n" in out
    assert main(command.split()[1:] + ["--out", str(tmp_path / "o")]) == 0
    assert capsys.readouterr().out.strip().endswith("late_entry1_train_seed42_epoch0.png")  # train.seed 42


def test_real_manifest_with_stand_in_videos(tmp_path, capsys):
    real = real_data_dir() / "fgclip_vad" / "ucf_fgclip_with_v3.json"
    # entry 0: Abuse001, three single-keyframe regions at 7.68, 32.64 and 76.48 s (25 fps grid)
    index_video(tmp_path / "Abuse" / "Abuse001_x264.mp4", seconds=80.0, fps=10.0, size=64)
    remap = f"UCF_Crimes_Videos/UCF_Crimes/Videos/={tmp_path}/"
    code = _show(str(real), "--entry", "0", "--path-remap", remap, "--strip", "--out", str(tmp_path / "o"))
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "o" / "ucf_fgclip_with_v3_entry0_train_seed0_epoch0.png").is_file()
    clips = load_manifest(real, VideoResolver(".", {remap.split("=")[0]: remap.split("=")[1]})).clips
    dataset = ClipDataset(clips[:1], None, SamplingOptions(), train=True)
    view = clip_view(dataset, clips[0], 0, seed=0, epoch=0)
    assert [r.used for r in view.regions] == [True, True, True]  # each single keyframe got a frame
    assert [read_index(f) for f in view.frames] == view.frame_numbers.tolist()
    for region, keyframe in zip(view.regions, (192, 816, 1912), strict=True):  # shown within the 0.5 s hold
        assert any(abs(t - keyframe / 25) <= 0.5 for t in view.plan.shown_s[region.visible])


def test_config_frame_cache_gives_the_cached_frames(moving, tmp_path, capsys):
    cache = tmp_path / "cache"
    manifest = str(moving / "moving.json")
    cached = ["data", "cache", manifest, "--video-root", str(moving), "--out", str(cache), "--size", "64"]
    assert main([*cached, "--context-s", "0"]) == 0
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data:\n  train_manifests: [{manifest}]\n  video_root: {moving}\n  context_s: 0.0\n"
        f"  image_size: 64\n  frame_cache: {cache}\n"
    )
    argv = ["data", "show", str(config), "--entry", "0", "--out", str(tmp_path / "o")]
    args, rest = build_parser(argv).parse_known_args(argv)
    split = data_show._load_split(args, rest)
    view = clip_view(split.dataset_for(split.clips[0]), split.clips[0], 0, seed=split.seed)
    assert view.source == "from the frame cache" and view.frames.shape[1:] == (64, 64, 3)
    cache_times = split.frame_cache.frame_times(split.clips[0].video)
    assert len(cache_times) < len(video_frame_times(split.clips[0].video))  # 8 of the 25 frames per second
    assert np.isin(view.plan.shown_s, cache_times).all()  # snapped to the cached frames, as the dataset does
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().endswith("moving_entry0_train_seed42_epoch0.png")


def test_cli_errors_for_a_refused_entry_and_an_ambiguous_one(moving, tmp_path, capsys):
    entries = json.loads((moving / "moving.json").read_text())
    bad = {**entries[0], "region_captions": ["only one caption for two tracks"]}
    manifest = tmp_path / "bad.json"
    manifest.write_text(json.dumps([entries[0], bad]))
    assert _show(str(manifest), "--entry", "1", "--video-root", str(moving)) == 1
    err = capsys.readouterr().err.strip()
    assert f"{manifest}: entry 1 cannot be read, so no model sees it: " in err and "box_infos" in err
    config = tmp_path / "two.yaml"
    config.write_text(
        f"data:\n  train_manifests: [{moving / 'moving.json'}, {manifest}]\n  video_root: {moving}\n"
    )
    assert _show(str(config), "--entry", "0") == 1
    assert "--entry is ambiguous: the train split reads" in capsys.readouterr().err
    assert _show(str(config), "--entry", "0", "--manifest", str(manifest), "--out", str(tmp_path / "o")) == 0
    assert capsys.readouterr().out.strip().endswith("bad_entry0_train_seed42_epoch0.png")
