"""`fgclip eval / infer / export-features` on a tiny synthetic run, through the real entry point.

The demo's evaluation (on the model it just trained, in memory) and `fgclip eval` (on the model saved to
disk) must report the same numbers: both go through `fgclip.builders.evaluate`.
"""

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from gloo_workers import free_port, init_gloo, shutdown_gloo, spawn  # noqa: E402
from stand_ins import cut_in_half, faststart_video  # noqa: E402

from fgclip.builders import load_run  # noqa: E402
from fgclip.checks import probe_test_videos  # noqa: E402
from fgclip.cli import main  # noqa: E402
from fgclip.commands.demo import _demo_overrides, evaluate_run  # noqa: E402
from fgclip.config import ConfigError, load_config  # noqa: E402
from fgclip.configs import demo_config_path  # noqa: E402
from fgclip.data.video import video_frame_times  # noqa: E402
from fgclip.evaluation.evaluators import EVALUATORS, Evaluator  # noqa: E402
from fgclip.synthetic import generate  # noqa: E402
from fgclip.tools.training_run import train  # noqa: E402

TINY = "{image_size: 32, patch_size: 8, vision_width: 32, vision_layers: 1, text_width: 32, text_layers: 1, heads: 2, projection_dim: 16}"
SHARED_KEYS = ("clip_retrieval_R@1", "region_retrieval_R@1", "frame_auc", "frame_ap", "retrieval",
               "region_classification", "frame_level", "settings")  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_demo")
    data = generate(out / "data", seed=3, num_videos=8, test_fraction=0.5)
    overrides = _demo_overrides(out, seed=3) + [
        "--model.tiny", TINY, "--train.max_steps", "2", "--train.per_device_batch_size", "4",
        "--train.save_steps", "2", "--train.logging_steps", "1", "--train.warmup_steps", "0",
        "--train.progress_bar", "false", "--data.num_frames", "2", "--data.num_workers", "0", "--eval.frames_per_snippet", "2",
    ]  # fmt: skip
    config = load_config(demo_config_path(), overrides)
    outcome = train(config)
    demo_report = evaluate_run(config, outcome.model, outcome.tokenizer, out / "data")
    return {"out": out, "data": data, "outcome": outcome, "demo_report": demo_report}


@pytest.fixture(scope="module")
def evaluated(run):
    out = run["out"] / "eval"
    assert main(["eval", str(run["outcome"].model_dir), "--out", str(out), "--no-progress"]) == 0
    return out


def test_eval_reports_the_demo_numbers(run, evaluated):
    out = evaluated
    report = json.loads((out / "eval.json").read_text())
    for key in SHARED_KEYS:
        assert report[key] == run["demo_report"][key], key
    frame = report["frame_level"]
    annotated = run["data"].test_annotation_path.read_text().splitlines()
    assert frame["overall"]["auc"] is not None and frame["num_videos"]["total"] == len(annotated)
    assert frame["annotated_but_not_scored"] == []
    assert (
        report["settings"]["num_frames"] == 2 and report["settings"]["image_size"] == 32
    )  # the run's settings
    assert (out / "roc_curve.png").stat().st_size > 0
    assert len(list((out / "timelines").glob("*.png"))) == min(6, len(annotated))  # --timelines default 6


def test_eval_of_a_checkpoint_reads_the_run_config_and_accepts_overrides(run, tmp_path, capsys):
    checkpoint = run["outcome"].output_dir / "checkpoint-2"
    out = tmp_path / "eval"
    argv = ["eval", str(checkpoint), "--out", str(out), "--no-progress", "--scoring", "ensemble",
            "--eval.frames_per_snippet", "4"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["settings"]["frames_per_snippet"] == 4 and report["settings"]["scoring"] == "ensemble"
    assert (
        report["retrieval"] == run["demo_report"]["retrieval"]
    )  # same weights: checkpoint-2 is the final step
    printed = capsys.readouterr().out
    assert (
        "clip retrieval R@1 (text->clip" in printed
        and "region retrieval R@1 (text->region" in printed
        and "frame AUC, overall" in printed
    )


def _toy_clips(ctx):
    """A toy evaluator: how many eval clips it saw, and how often a clip's own caption is its nearest one."""
    embedded = ctx.embedded
    similarity = embedded.clip_embeds @ embedded.caption_embeds.T  # (N, N)
    yield "clips", int(similarity.shape[0])
    yield "own_caption_first", float((similarity.argmax(-1) == torch.arange(len(similarity))).float().mean())


TOY = Evaluator(
    "toy_clips",
    needs=("dataset",),
    run=_toy_clips,
    rows=lambda section: iter(
        [(f"toy: own caption first ({section['clips']} clips)", section["own_caption_first"], None)]
    ),
    headline=lambda section: {"toy_clips": section and section["clips"]},
)


def test_a_toy_evaluator_added_in_one_place_reaches_eval_json_and_the_table(
    run, evaluated, tmp_path, capsys, monkeypatch
):
    """One registry entry: `eval.evaluators` accepts it, it runs, and eval.json and the console table show it."""
    monkeypatch.setitem(EVALUATORS, TOY.name, TOY)
    out = tmp_path / "eval"
    argv = ["eval", str(run["outcome"].model_dir), "--out", str(out), "--no-progress", "--timelines", "0",
            "--eval.evaluators", "[retrieval, toy_clips]"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "eval.json").read_text())
    entries = json.loads(run["data"].test_path.read_text())
    assert report["toy_clips"]["clips"] == len(entries) == report["retrieval"]["num_clips"]
    assert len({entry["global_caption"] for entry in entries}) == len(
        entries
    )  # so R@1 asks the same question
    assert report["toy_clips"]["own_caption_first"] == pytest.approx(
        report["retrieval"]["clip"]["image_to_text_R@1"]
    )
    assert list(report)[:6] == [
        "clip_retrieval_R@1",
        "region_retrieval_R@1",
        "frame_auc",
        "frame_ap",
        "localization_pointing",
        "toy_clips",
    ]
    assert report["frame_level"] is None and report["settings"]["evaluators"] == ["retrieval", "toy_clips"]
    printed = capsys.readouterr().out
    assert f"toy: own caption first ({len(entries)} clips)" in printed and "clip retrieval R@1" in printed
    assert "frame AUC" not in printed


def test_eval_snippet_pooling_is_a_config_setting(run, evaluated, tmp_path):
    """`--eval.snippet_pooling frame|window` changes the frame scores, not retrieval; the report says which."""
    default = json.loads((evaluated / "eval.json").read_text())
    assert default["settings"]["snippet_pooling"] == "snippet" and "window_s" not in default["settings"]
    for pooling in ("frame", "window"):
        out = tmp_path / pooling
        argv = ["eval", str(run["outcome"].model_dir), "--out", str(out), "--no-progress", "--timelines", "0",
                "--eval.snippet_pooling", pooling, "--eval.window_s", "1.5"]  # fmt: skip
        assert main(argv) == 0
        report = json.loads((out / "eval.json").read_text())
        assert report["settings"]["snippet_pooling"] == pooling
        assert ("window_s" in report["settings"]) == (pooling == "window")
        assert report["retrieval"] == default["retrieval"]
        assert report["frame_level"]["overall"] != default["frame_level"]["overall"]


def test_infer_writes_a_timeline_that_matches_eval(run, evaluated, tmp_path):
    data = run["data"]
    name = [
        line.split()[0] for line in data.test_annotation_path.read_text().splitlines() if "Normal" not in line
    ][0]
    video = next(data.videos_dir.rglob(f"{name}.mp4"))
    argv = ["infer", str(video), "--checkpoint", str(run["outcome"].model_dir), "--out", str(tmp_path),
            "--temporal-annotations", str(data.test_annotation_path), "--no-progress",
            "--box", "0.5", "2.0", "0.1", "0.1", "0.6", "0.6", "--anomaly-maps", "2"]  # fmt: skip
    assert main(argv) == 0
    assert (
        tmp_path / f"{name}.anomaly_maps.png"
    ).stat().st_size > 0  # the map over the 2 top snippets' frames
    result = json.loads((tmp_path / f"{name}.scores.json").read_text())
    num_frames = len(video_frame_times(video))
    assert result["num_frames"] == num_frames == len(result["frame_scores"])
    assert len(result["snippets"]) == -(-num_frames // 16)
    assert sum(result["regions"][0]["class_probs"].values()) == pytest.approx(1.0)
    with open(tmp_path / f"{name}.scores.csv") as handle:
        assert len(list(csv.DictReader(handle))) == num_frames
    assert (tmp_path / f"{name}.timeline.png").stat().st_size > 0
    assert np.allclose(np.load(evaluated / "frame_scores.npz")[f"{name}/score"], result["frame_scores"])


def test_export_features_layout(run, tmp_path):
    videos = sorted(run["data"].videos_dir.rglob("*.mp4"))[:2]
    model_dir = str(run["outcome"].model_dir)
    base = ["export-features", model_dir, "--videos", *map(str, videos), "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "keep")]) == 0
    assert main([*base, "--out", str(tmp_path / "drop"), "--partial-snippet", "drop"]) == 0
    description = json.loads((tmp_path / "keep" / "features.json").read_text())
    assert description["dim"] == 16 and description["normalised"] and description["snippet_frames"] == 16
    for video in videos:
        num_frames = len(video_frame_times(video))
        kept = np.load(tmp_path / "keep" / f"{video.stem}.npy")
        dropped = np.load(tmp_path / "drop" / f"{video.stem}.npy")
        assert kept.shape == (-(-num_frames // 16), 16) and kept.dtype == np.float32
        assert dropped.shape == (num_frames // 16, 16)
        assert np.allclose(np.linalg.norm(kept, axis=1), 1.0, atol=1e-5)
        assert np.array_equal(kept[: len(dropped)], dropped)
        assert description["videos"][video.stem]["num_frames"] == num_frames


def test_frame_level_only_with_a_test_video_list(run, evaluated, tmp_path):
    data = run["data"]
    argv = ["eval", str(run["outcome"].model_dir), "--out", str(tmp_path), "--no-progress",
            "--anomaly-videos", str(data.test_list_path), "--anomaly-video-root", str(data.videos_dir),
            "--data.eval_manifests", "[]"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["retrieval"] is None and report["clip_retrieval_R@1"] is None
    full = json.loads((evaluated / "eval.json").read_text())
    assert report["frame_level"] == full["frame_level"]  # the list names the same test videos


def test_eval_without_a_run_config_says_what_to_pass(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    assert main(["eval", str(tmp_path / "model")]) == 1
    assert "no fgclip_config.yaml in it or in its parent" in capsys.readouterr().err


def test_export_features_and_infer_warn_on_a_video_cut_short(run, tmp_path, capsys):
    half = cut_in_half(faststart_video(tmp_path / "full.mp4"), tmp_path / "half.mp4")  # header: 100 frames
    model_dir = str(run["outcome"].model_dir)
    export = ["export-features", model_dir, "--videos", str(half), "--out", str(tmp_path / "f"), "--no-progress"]  # fmt: skip
    assert main(export) == 0
    warning = f"{half}: the header says 100 frames but only 49 can be read (truncated or corrupt file?)"
    assert warning in capsys.readouterr().err
    assert json.loads((tmp_path / "f" / "features.json").read_text())["videos"]["half"]["num_frames"] == 49
    infer = ["infer", str(half), "--checkpoint", model_dir, "--out", str(tmp_path / "i"), "--no-progress"]
    assert main(infer) == 0
    assert warning in capsys.readouterr().err
    assert len(json.loads((tmp_path / "i" / "half.scores.json").read_text())["frame_scores"]) == 49


def test_eval_stops_before_scoring_naming_an_unreadable_eval_or_test_video(run, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(run["data"].out_dir, data)
    test = json.loads((data / "test.json").read_text())
    broken = data / test[1]["video"]
    broken.write_bytes(b"not a video")
    on_copy = ["--data.eval_manifests", json.dumps([str(data / "test.json")]), "--data.video_root", str(data)]
    out = tmp_path / "eval"
    assert main(["eval", str(run["outcome"].model_dir), "--out", str(out), "--no-progress", *on_copy]) == 1
    line = capsys.readouterr().err.splitlines()[-1]  # one bad video: the whole error on one line
    assert line.startswith(f"fgclip eval: {data / 'test.json'}, entry 1, video {test[1]['video']!r}, field "
                           f"'video': video {broken}: cannot be opened as a video (")  # fmt: skip
    assert line.endswith("(evaluation video; data.invalid_entries=error: `skip` leaves it out)")
    assert not (out / "eval.json").exists()

    loaded = load_run(run["outcome"].model_dir, overrides=on_copy)
    videos = {Path(e["video"]).stem: data / e["video"] for e in test}
    with pytest.raises(ConfigError, match=f"1 frame-level test video.*\n  video {broken}: cannot be opened"):
        probe_test_videos(loaded.config.data, videos)
    loaded.config.data.invalid_entries = "skip"
    assert sorted(probe_test_videos(loaded.config.data, videos)) == sorted(set(videos) - {broken.stem})


def test_eval_localization_with_the_twin_control(run, evaluated, tmp_path, capsys):
    """The localization evaluator runs by default on the eval clips; `eval.twins` (the synthetic meta.json, which
    the demo's run config carries) adds the same-box-in-the-normal-twin control; `--eval.twins null` drops it.
    Its frames are the abnormal tracks' frames."""
    with_twins = json.loads((evaluated / "eval.json").read_text())["localization"]
    test = json.loads(run["data"].test_path.read_text())
    tracks = sum(1 for entry in test for track in entry["box_infos"] if track)
    assert with_twins["frames"] == 4 * tracks > 0
    assert 0 <= with_twins["pointing"] <= 1 and 0 < with_twins["pointing_chance"] < 0.5
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                str(run["outcome"].model_dir),
                "--out",
                str(out),
                "--no-progress",
                "--eval.twins",
                "null",
            ]
        )
        == 0
    )
    without = json.loads((out / "eval.json").read_text())["localization"]
    assert without["twin_frames"] == 0 and without["pointing"] == with_twins["pointing"]
    meta = run["data"].out_dir / "meta.json"
    twins = json.loads(meta.read_text())["twins"]
    normals = {Path(e["video"]).stem for e in test if not any(e["box_infos"])}
    paired = sum(1 for e in test if any(e["box_infos"]) and Path(e["video"]).stem in twins.values()
                 and any(n in normals and twins[n] == Path(e["video"]).stem for n in twins))  # fmt: skip
    assert with_twins["twin_frames"] == 4 * paired > 0
    assert "localization pointing" in capsys.readouterr().out


def test_eval_of_the_shipped_stand_in_writes_nowhere_inside_the_package(tiny_synth, tmp_path, monkeypatch):
    from fgclip.standin import standin_path

    package = standin_path().parent
    before = sorted(p.name for p in package.iterdir())
    monkeypatch.chdir(tmp_path)
    argv = ["eval", str(standin_path()), "--config", str(demo_config_path()), "--data", str(tiny_synth / "test.json"),
            "--video-root", str(tiny_synth), "--no-progress", "--eval.evaluators", "[retrieval]"]  # fmt: skip
    assert main(argv) == 0
    assert sorted(p.name for p in package.iterdir()) == before
    assert (tmp_path / "eval-standin" / "eval.json").is_file()


def test_export_features_vadclip_layout_in_shards_then_merge(run, tmp_path, capsys):
    videos = sorted(run["data"].videos_dir.rglob("*.mp4"))[:3]
    base = ["export-features", str(run["outcome"].model_dir), "--videos", *map(str, videos), "--no-progress",
            "--layout", "vadclip", "--crops", "5", "--test-crop", "4"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "one")]) == 0
    for shard in ("1/2", "0/2"):
        assert main([*base, "--out", str(tmp_path / "two"), "--shard", shard]) == 0
    assert "when all are, run: fgclip merge" in capsys.readouterr().out
    assert main(["merge", str(tmp_path / "two")]) == 0
    one, two = (tmp_path / "one").resolve(), (tmp_path / "two").resolve()
    for name in ("features.json", "features_rgb.csv", "features_rgbtest.csv"):
        assert (two / name).read_text() == (one / name).read_text().replace(str(one), str(two)), name
    description = json.loads((one / "features.json").read_text())
    assert description["crops"]["count"] == 5 and description["crops"]["crop_side"] == 32
    for video in videos:
        for k in range(5):
            path = f"{video.parent.name}/{video.stem}__{k}.npy"
            assert np.array_equal(np.load(one / path), np.load(two / path)), path
    assert main(["merge", str(tmp_path / "one")]) == 1
    assert "no features.shard-I-of-N.json files" in capsys.readouterr().err


def test_data_show_blends_the_anomaly_map_into_the_frames(run, tmp_path):
    data = run["data"]
    plain, mapped = tmp_path / "plain", tmp_path / "mapped"
    argv = [
        "data",
        "show",
        str(data.test_path),
        "--video-root",
        str(data.out_dir),
        "--entry",
        "0",
        "--split",
        "eval",
    ]
    assert main([*argv, "--out", str(plain)]) == 0
    assert main([*argv, "--out", str(mapped), "--anomaly-map", str(run["outcome"].model_dir)]) == 0
    (before,), (after,) = plain.glob("*.png"), mapped.glob("*.png")
    assert before.read_bytes() != after.read_bytes()  # the same sheet, with the map blended in


def _same_evaluation(single: Path, sharded: Path) -> None:
    """eval.json and frame_scores.npz equal, value for value (the output folders differ, nothing else may)."""
    assert json.loads((sharded / "eval.json").read_text()) == json.loads((single / "eval.json").read_text())
    with np.load(single / "frame_scores.npz") as a, np.load(sharded / "frame_scores.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert np.array_equal(a[key], b[key]), key


def test_eval_in_shards_then_merge_equals_one_process(run, evaluated, tmp_path, capsys):
    base = ["eval", str(run["outcome"].model_dir), "--out", str(tmp_path), "--no-progress"]
    for shard in ("2/3", "0/3"):
        assert main([*base, "--shard", shard]) == 0
    assert main(["merge", str(tmp_path)]) == 1
    assert "eval shards [1] of 3 have not finished" in capsys.readouterr().err
    assert main([*base, "--shard", "1/3"]) == 0
    scored = [json.loads((tmp_path / f"eval.shard-{i}-of-3.json").read_text())["videos"] for i in range(3)]
    assert (
        sum(len(v) for v in scored)
        == json.loads((evaluated / "eval.json").read_text())["frame_level"]["num_videos"]["total"]
    )
    assert not set(scored[0]) & set(scored[1])  # disjoint
    assert main(["merge", str(tmp_path)]) == 0
    _same_evaluation(evaluated, tmp_path)


def _eval_rank(rank: int, world_size: int, port: int, model_dir: str, out: str, videos: list[str]) -> None:
    import fgclip.evaluation.evaluators as evaluators

    score_videos = evaluators.score_videos

    def recorded(model, videos, *args, **kwargs):  # which videos this rank scores
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(sorted(videos)))
        return score_videos(model, videos, *args, **kwargs)

    evaluators.score_videos = recorded
    init_gloo(rank, world_size, port)
    try:
        assert main(["eval", model_dir, "--out", out, "--no-progress", "--device", "cpu"]) == 0
        for argv in _list_commands(model_dir, Path(out), videos):
            assert main([*argv, "--device", "cpu"]) == 0
    finally:
        shutdown_gloo()


def _list_commands(model_dir: str, out: Path, videos: list[str]) -> list[list[str]]:
    """export-features and infer over a list of videos, as sharded by the gloo test and run plainly beside it."""
    return [
        ["export-features", model_dir, "--videos", *videos, "--out", str(out / "features"), "--layout", "vadclip",
         "--no-progress"],
        ["infer", *videos, "--checkpoint", model_dir, "--out", str(out / "infer"), "--no-progress"],
    ]  # fmt: skip


def test_eval_on_two_gloo_ranks_equals_one_process(run, evaluated, tmp_path):
    """A real 2-process run (gloo, CPU) of `fgclip eval`, `export-features` and `infer` over a list: each rank
    takes its half of the videos, rank 0 writes what is merged; every output equals the single-process one."""
    out, model_dir = tmp_path / "ddp", str(run["outcome"].model_dir)
    videos = [str(v) for v in sorted(run["data"].videos_dir.rglob("*.mp4"))[:3]]
    spawn(_eval_rank, (2, free_port(), model_dir, str(out), videos))
    for argv in _list_commands(model_dir, tmp_path / "one", videos):
        assert main(argv) == 0
    one, two = (tmp_path / "one" / "features").resolve(), (out / "features").resolve()
    for name in ("features.json", "features_rgb.csv"):
        assert (two / name).read_text() == (one / name).read_text().replace(str(one), str(two)), name
    for path in one.rglob("*.npy"):
        assert np.array_equal(np.load(path), np.load(two / path.relative_to(one))), path
    for video in map(Path, videos):
        single = json.loads((tmp_path / "one" / "infer" / f"{video.stem}.scores.json").read_text())
        assert json.loads((out / "infer" / f"{video.stem}.scores.json").read_text()) == single
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    every = json.loads((evaluated / "eval.json").read_text())["frame_level"]["num_videos"]["total"]
    assert ranks[0] and ranks[1] and not set(ranks[0]) & set(ranks[1]) and len(ranks[0] + ranks[1]) == every
    _same_evaluation(evaluated, out)
