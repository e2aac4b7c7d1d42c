"""The real entry point, end to end, on a tiny synthetic set: synth -> train -> checkpoint -> demo report."""

import json

import pytest
import torch

from fgclip import FGCLIPModel
from fgclip.cli import main
from fgclip.configs import demo_config_path

TINY = "{image_size: 32, patch_size: 8, vision_width: 32, vision_layers: 2, text_width: 32, text_layers: 1, heads: 2, projection_dim: 32}"


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    assert main(["data", "synth", "--out", str(out), "--num-videos", "12", "--seed", "1"]) == 0
    return out


def test_train_writes_metrics_tensorboard_and_a_loadable_checkpoint(synth_dir, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(
        [
            "train",
            str(demo_config_path()),
            "--data.train_manifests",
            json.dumps([str(synth_dir / "train.json")]),
            "--data.hard_negatives",
            json.dumps([str(synth_dir / "hard_negatives.json")]),
            "--data.video_root",
            str(synth_dir),
            "--data.num_workers",
            "0",
            "--model.tiny",
            TINY,
            "--output_dir",
            str(run),
            "--max_steps",
            "3",
            "--train.warmup_steps",
            "0",
            "--per_device_batch_size",
            "4",
            "--save_steps",
            "2",
            "--logging_steps",
            "1",
            "--progress_bar",
            "false",
        ]
    )
    assert code == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in ("loss", "loss/global", "loss/region", "loss/hard_negative", "lr"):
        assert all(key in r and r[key] == r[key] for r in rows), key  # present and not NaN
    assert (
        abs(
            rows[0]["loss"]
            - (rows[0]["loss/global"] + rows[0]["loss/region"] + rows[0]["loss/hard_negative"])
        )
        < 1e-4
    )
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "loss_curves.png").stat().st_size > 0
    checkpoints = sorted(p.name for p in run.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-3"]  # save_total_limit 1 in the demo config rotated checkpoint-2 away
    for name in ("model.safetensors", "tokenizer.json", "fgclip_config.yaml", "optimizer.pt"):
        assert (run / "checkpoint-3" / name).is_file(), name
    model = FGCLIPModel.from_pretrained(run / "model")
    assert model.logit_scale.dtype == torch.float32
    assert "step 3/3" in capsys.readouterr().out


def test_demo_entry_point_writes_a_report(tmp_path):
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--num-videos",
            "12",
            "--max_steps",
            "2",
            "--train.warmup_steps",
            "0",
            "--model.tiny",
            TINY,
            "--num_workers",
            "0",
            "--per_device_batch_size",
            "4",
            "--progress_bar",
            "false",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    for part in (report, report["zero_shot"]):  # fine-tuned, and the stand-in before it
        for key in ("clip_retrieval_R@1", "region_retrieval_R@1", "frame_auc"):
            assert 0.0 <= part[key]["value"] <= 1.0 and 0.0 < part[key]["chance"] < 1.0
    assert report["zero_shot"] != {k: report[k] for k in report["zero_shot"]}  # training changed the model
    head = report["head"]  # the weakly supervised head on both backbones' exported features, same seeds
    assert set(head["summary"]) == {"stand-in", "fine-tuned"} and head["seeds"] == [0, 1, 2]
    assert 0.0 <= head["summary"]["fine-tuned"]["auc"]["mean"] <= 1.0
    for part in (report, report["zero_shot"]):  # localization with its twin control, both backbones
        section = part["localization"]
        assert section["frames"] > 0 and section["twin_frames"] > 0
        assert 0.0 <= section["pointing"] <= 1.0 and 0.0 < section["pointing_chance"] < 1.0
    for selected in head["selected_step"].values():  # the step each head was kept at, out of its budget
        assert selected["steps"] == 600 and all(1 <= s <= 600 for s in selected["per_seed"])
        assert len(selected["per_seed"]) == 3
    assert (out / "run" / "loss_curves.png").is_file()
    assert (out / "frame_cache").is_dir()  # the training clips were read from the demo's frame cache
    assert "frame_cache: " + str(out / "frame_cache") in (out / "run" / "fgclip_config.yaml").read_text()


def test_the_demos_frame_cache_gives_the_pixels_of_decoding(synth_dir, tmp_path):
    """The demo trains from a raw, every-frame cache; each training item must equal the decoded one."""
    from fgclip import builders
    from fgclip.commands.demo import _demo_overrides, cache_demo_clips
    from fgclip.config import load_config

    overrides = [*_demo_overrides(tmp_path, seed=0), "--model.tiny", TINY]
    overrides[overrides.index("--data.train_manifests") + 1] = json.dumps([str(synth_dir / "train.json")])
    overrides[overrides.index("--data.eval_manifests") + 1] = json.dumps([str(synth_dir / "test.json")])
    overrides[overrides.index("--data.hard_negatives") + 1] = json.dumps(
        [str(synth_dir / "hard_negatives.json")]
    )
    overrides[overrides.index("--data.video_root") + 1] = str(synth_dir)
    decoded = load_config(demo_config_path(), overrides)
    cached = load_config(demo_config_path(), [*overrides, "--data.frame_cache", str(tmp_path / "cache")])
    cache_demo_clips(cached, image_size=32)
    tokenizer = builders.build_tokenizer(decoded.model)
    datasets = [
        builders.dataset_from_manifests(c.data, c.data.train_manifests, tokenizer, 32, train=True)
        for c in (decoded, cached)
    ]
    assert datasets[1].frame_cache is not None and datasets[0].frame_cache is None
    for i in range(len(datasets[0])):
        items = []
        for dataset in datasets:
            torch.manual_seed(i)  # the same sampled times in both
            items.append(dataset[i]["pixel_values"])
        torch.testing.assert_close(items[0], items[1], rtol=0, atol=0)
