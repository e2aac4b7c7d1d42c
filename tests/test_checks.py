"""One set of start-up checks: what `fgclip doctor` calls an error, `fgclip train` refuses before step 1 (and
before it writes anything), with the same message."""

import json

import pytest

from fgclip.cli import main
from fgclip.configs import demo_config_path

BAD = [
    (["--max_steps", "20", "--train.warmup_steps", "30"], "lr.warmup", "train.warmup_steps=30 >= train.max_steps=20"),
    (["--max_steps", "40", "--bank.size", "32", "--bank.warmup_steps", "40"], "memory_bank.warmup",
     "the bank never switches on"),
    (["--learning_rate", "-1e-4"], "optimizer", "train.learning_rate=-0.0001"),
    (["--weight_decay", "-0.1"], "optimizer", "train.weight_decay=-0.1"),
    (["--model.tiny", "{vision_widht: 64}"], "model.tiny", "unknown key(s) ['vision_widht']"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "check", "message"), BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)]
)
def test_doctor_errors_are_refused_by_train(tmp_path, capsys, overrides, check, message):
    run = tmp_path / "run"
    base = [str(demo_config_path()), "--output_dir", str(run), *overrides]
    assert main(["doctor", *base, "--no-data", "--json"]) == 1
    findings = [f for f in json.loads(capsys.readouterr().out) if f["severity"] == "error"]
    assert [f["check"] for f in findings] == [check] and message in findings[0]["message"]

    assert main(["train", *base]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fgclip train: ") and message in err and "Traceback" not in err
    assert not run.exists()  # refused before anything is written


MISSING = [
    ("--data.train_manifests", '["{tmp}/nope.json"]', "data.train_manifests", "data.train_manifests: file not found"),
    ("--data.hard_negatives", '["{tmp}/hn.json"]', "data.hard_negatives", "data.hard_negatives: file not found"),
    ("--data.video_root", "{tmp}/videos", "data.video_root", "data.video_root: folder not found"),
    ("--data.test_list", "{tmp}/test.txt", "data.test_list", "data.test_list: file not found"),
    ("--model.init", "{tmp}/clip", "model.init", "model.init: checkpoint not found"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value", "check", "message"), MISSING, ids=[m[2] for m in MISSING])
def test_missing_inputs_are_doctor_errors_and_refused_by_train(tmp_path, capsys, key, value, check, message):
    run = tmp_path / "run"
    base = [str(demo_config_path()), "--output_dir", str(run), key, value.format(tmp=tmp_path)]
    assert main(["doctor", *base, "--json"]) == 1
    findings = [f for f in json.loads(capsys.readouterr().out) if f["severity"] == "error"]
    assert any(f["check"] == check and f["message"].startswith(message) for f in findings), findings

    assert main(["train", *base]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"fgclip train: {message}") and "Traceback" not in err
    assert not run.exists()
