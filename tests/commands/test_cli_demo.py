"""The real entry point, end to end, on a tiny synthetic set: synth -> train -> checkpoint -> demo report."""

import json

import pytest
import torch

from fgclip import FGCLIPModel
from fgclip.cli import main
from fgclip.commands.demo import demo_config_path

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
    assert (out / "run" / "loss_curves.png").is_file()
