"""`fgclip head train / eval / compare` through the real entry point.

Fast: on synthetic features written in the export layout. Slow: synthetic videos -> a tiny fgclip run ->
the real `fgclip export-features` for two checkpoints -> head train / eval / compare.
"""

import json

import pytest
import torch

from fgclip.cli import main
from fgclip.head.synthetic import write_planted_features

RECIPE = ["--steps", "10", "--eval-every", "5", "--batch-size", "8", "--hidden-dim", "16", "--window", "2"]


def _eval_argv(head, features, test_list, annotations, out):
    return ["head", "eval", str(head), str(features), "--temporal-annotations", str(annotations),
            "--test-list", str(test_list), "--out", str(out), "--timelines", "2"]  # fmt: skip


def test_train_eval_compare_on_exported_layout(planted, tmp_path, capsys):
    paths, _, _ = planted
    weaker = write_planted_features(
        tmp_path / "weak", seed=1, num_train=80, num_test=30, snippets=(12, 30), strength=0.4
    )
    head = tmp_path / "head"
    assert main(["head", "train", str(paths.features), "--labels", str(paths.train_list), "--out", str(head),
                 *RECIPE, "--seed", "1"]) == 0  # fmt: skip
    for name in ("head.safetensors", "last.safetensors", "head.json", "metrics.jsonl", "loss.png"):
        assert (head / name).stat().st_size > 0, name
    trained = json.loads((head / "head.json").read_text())
    assert trained["selection"]["on"] == "validation" and trained["head"]["window"] == 2
    assert trained["torch_threads"] == torch.get_num_threads()  # bit for bit only at this count
    assert len((head / "metrics.jsonl").read_text().splitlines()) == 10
    assert main(_eval_argv(head, paths.features, paths.test_list, paths.annotations, tmp_path / "eval")) == 0
    printed = capsys.readouterr().out
    assert "frame AUC / AP, overall" in printed and "VadCLIP convention" in printed
    evaluated = json.loads((tmp_path / "eval" / "head_eval.json").read_text())

    argv = ["head", "compare", str(weaker.features), str(paths.features), "--labels", str(paths.train_list),
            "--test-list", str(paths.test_list), "--temporal-annotations", str(paths.annotations),
            "--names", "weak", "strong", "--seeds", "1", "2", "3", "--out", str(tmp_path / "cmp"), *RECIPE]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    # seed 1 of the strong backbone in compare is exactly the head trained and evaluated above
    assert result["runs"]["strong"][0]["auc"] == evaluated["frame_level"]["overall"]["auc"]
    diffs = [
        s["auc"] - w["auc"] for w, s in zip(result["runs"]["weak"], result["runs"]["strong"], strict=True)
    ]
    assert result["paired_difference"]["auc"]["per_seed"] == pytest.approx(diffs)
    assert "paired strong - weak" in capsys.readouterr().out


def test_compare_needs_three_seeds(planted, capsys):
    paths, _, _ = planted
    argv = ["head", "compare", str(paths.features), str(paths.features), "--labels", str(paths.train_list),
            "--test-list", str(paths.test_list), "--temporal-annotations", str(paths.annotations), "--seeds", "0", "1"]  # fmt: skip
    assert main(argv) == 2
    assert "--seeds needs at least 3 seeds" in capsys.readouterr().err


@pytest.mark.slow
def test_head_on_features_exported_from_tiny_fgclip_checkpoints(tmp_path, capsys):
    from fgclip.commands.demo import _demo_overrides
    from fgclip.config import load_config
    from fgclip.configs import demo_config_path
    from fgclip.synthetic import generate
    from fgclip.tools.training_run import train

    data = generate(tmp_path / "data", seed=5, num_videos=16, test_fraction=0.5, duration_s=3.0)
    tiny = ("{image_size: 32, patch_size: 8, vision_width: 32, vision_layers: 1, text_width: 32, text_layers: 1, "
            "heads: 2, projection_dim: 16}")  # fmt: skip
    overrides = _demo_overrides(tmp_path, seed=5) + [
        "--model.tiny", tiny, "--train.max_steps", "2", "--train.per_device_batch_size", "4",
        "--train.save_steps", "1", "--train.save_total_limit", "2", "--train.logging_steps", "1",
        "--train.warmup_steps", "0",
        "--train.progress_bar", "false", "--data.num_frames", "2", "--data.num_workers", "0",
        "--eval.frames_per_snippet", "2",
    ]  # fmt: skip
    outcome = train(load_config(demo_config_path(), overrides))
    test = set(data.test_list_path.read_text().split())
    everything = sorted(str(p.relative_to(data.videos_dir)) for p in data.videos_dir.rglob("*.mp4"))
    (tmp_path / "all.txt").write_text("\n".join(everything) + "\n")
    (tmp_path / "train.txt").write_text("\n".join(v for v in everything if v not in test) + "\n")
    exported = {}
    for name in ("checkpoint-1", "checkpoint-2"):
        exported[name] = tmp_path / f"features-{name}"
        assert main(["export-features", str(outcome.output_dir / name), "--video-list", str(tmp_path / "all.txt"),
                     "--video-root", str(data.videos_dir), "--out", str(exported[name]), "--no-progress"]) == 0  # fmt: skip
    recipe = [
        "--steps",
        "6",
        "--eval-every",
        "3",
        "--batch-size",
        "4",
        "--hidden-dim",
        "16",
        "--val-fraction",
        "0.3",
    ]
    prompts = tmp_path / "prompts.npz"  # the MIL-align branch against the backbone's class prompts
    assert main(["head", "prompts", str(outcome.output_dir / "checkpoint-2"), "--prompts",
                 str(data.prompts_path), "--out", str(prompts)]) == 0  # fmt: skip
    head = tmp_path / "head"
    assert main(["head", "train", str(exported["checkpoint-2"]), "--labels", str(tmp_path / "train.txt"),
                 "--out", str(head), "--class-prompts", str(prompts), *recipe]) == 0  # fmt: skip
    assert "loss/align" in (head / "metrics.jsonl").read_text().splitlines()[0]
    assert main(_eval_argv(head, exported["checkpoint-2"], data.test_list_path, data.test_annotation_path,
                           tmp_path / "eval")) == 0  # fmt: skip
    report = json.loads((tmp_path / "eval" / "head_eval.json").read_text())
    assert (
        report["frame_level"]["num_videos"]["total"] == len(test)
        and report["frame_level"]["overall"]["auc"] is not None
    )
    argv = ["head", "compare", str(exported["checkpoint-1"]), str(exported["checkpoint-2"]),
            "--labels", str(tmp_path / "train.txt"), "--test-list", str(data.test_list_path),
            "--temporal-annotations", str(data.test_annotation_path), *recipe]  # fmt: skip
    assert main(argv) == 0
    assert "paired B - A" in capsys.readouterr().out


def test_compare_checks_the_test_features_before_training(planted, tmp_path, capsys):
    paths, _, _ = planted
    other = write_planted_features(tmp_path / "other", seed=7, num_train=80, num_test=30, snippets=(12, 30))
    argv = ["head", "compare", str(paths.features), str(other.features), "--labels", str(paths.train_list),
            "--test-list", str(paths.test_list), "--temporal-annotations", str(paths.annotations)]  # fmt: skip
    assert main(argv) == 1  # other videos (seed 7) under the same names: the annotations do not fit them
    assert f"fgclip head compare: {other.features}: " in capsys.readouterr().err
