"""`fgclip doctor CONFIG`: findings with severities and numbers; exit code 1 on errors."""

from __future__ import annotations

import json

import pytest
import torch

from fgclip import builders, checks
from fgclip.builders import read_clips
from fgclip.cli import main
from fgclip.config import ConfigError, load_config
from fgclip.configs import demo_config_path
from fgclip.tools.doctor import run_doctor


def _data_args(synth, manifest="train.json"):
    return [
        "--data.train_manifests", json.dumps([str(synth / manifest)]),
        "--data.hard_negatives", json.dumps([str(synth / "hard_negatives.json")]),
        "--data.video_root", str(synth),
        "--data.test_list", str(synth / "test_list.txt"),
    ]  # fmt: skip


def _findings(capsys) -> dict[str, list[dict]]:
    by_check: dict[str, list[dict]] = {}
    for finding in json.loads(capsys.readouterr().out):
        by_check.setdefault(finding["check"], []).append(finding)
    return by_check


def test_demo_config_is_healthy_and_every_check_reports_its_numbers(tiny_synth, tmp_path, capsys):
    argv = [
        "doctor", str(demo_config_path()), *_data_args(tiny_synth), "--output_dir", str(tmp_path / "run"),
        "--bank.size", "32", "--bank.warmup_steps", "50",  # the demo trains without a bank
    ]  # fmt: skip
    assert main([*argv, "--world-size", "2", "--json"]) == 0
    found = _findings(capsys)
    assert not [f for fs in found.values() for f in fs if f["severity"] == "error"]
    message = {check: " | ".join(f["message"] for f in fs) for check, fs in found.items()}
    # demo: batch 16, 1 region per synthetic clip, (here) bank 32, warm-up 50 of 300 steps, 4 frames
    assert "batch 16 x 1.00 regions/clip" in message["negatives.region"]
    assert (
        "x world size 2 - 1 = 31 in-batch + 0 fresh text (bank.fresh_text) + 32 banked"
        in message["negatives.region"]
    )
    assert "switches on at optimizer step 50 of 300" in message["memory_bank"]
    assert "32 clips per optimizer step" in message["accumulation"]
    assert "logit_scale 4.6052 (x100.0)" in message["temperatures"]
    assert "no training video is on the test list" in message["leakage"]
    assert message["frames"].startswith("4 frames per clip from spans of")
    assert "6 training clips" in message["data"]
    assert message["data.videos"] == "every video of the 6 training clips probed"
    assert (
        "global: 6 captions, tokens median" in message["captions"]
    )  # in the synthetic word tokenizer's tokens
    assert "0 (0.0%) over 77 are truncated" in message["captions"]

    assert main(argv) == 0  # the table: one line per finding, then the counts
    table = capsys.readouterr().out.splitlines()
    assert table[-1] == "0 error(s), 1 warning(s), 12 note(s)" and table[0].startswith("WARNING  data.size")


def test_the_negatives_composition_names_fresh_and_banked_parts(tiny_synth, tmp_path, capsys):
    argv = [
        "doctor", str(demo_config_path()), *_data_args(tiny_synth), "--output_dir", str(tmp_path / "run"),
        "--bank.size", "32", "--bank.warmup_steps", "50", "--bank.fresh_text", "8", "--bank.momentum", "0.99",
    ]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    message = " | ".join(f["message"] for f in _findings(capsys)["negatives.region"])
    assert "= 15 in-batch + 8 fresh text (bank.fresh_text) + 24 banked" in message
    assert "EMA encoder, bank.momentum=0.99: ~100-step average" in message


def test_errors_are_found_and_exit_code_is_1(tiny_synth, tmp_path, capsys):
    (tmp_path / "run" / "checkpoint-5").mkdir(parents=True)
    argv = [
        "doctor", str(demo_config_path()), *_data_args(tiny_synth, manifest="test.json"),
        "--output_dir", str(tmp_path / "run"), "--max_steps", "40", "--train.warmup_steps", "10",
        "--bank.size", "32", "--bank.warmup_steps", "40", "--num_frames", "200", "--gradient_accumulation_steps", "4",
        "--per_device_batch_size", "2", "--json",
    ]  # fmt: skip
    assert main(argv) == 1
    found = _findings(capsys)
    errors = {f["check"] for fs in found.values() for f in fs if f["severity"] == "error"}
    assert errors == {"output_dir", "memory_bank.warmup", "leakage"}
    assert "bank.warmup_steps=40 >= train.max_steps=40" in found["memory_bank.warmup"][0]["message"]
    assert "6 training clip(s) from 6 test video(s)" in found["leakage"][0]["message"]
    warnings = {f["check"] for fs in found.values() for f in fs if f["severity"] == "warning"}
    assert {"accumulation", "frames", "negatives.region", "negatives.global"} <= warnings
    assert "data.num_frames=200 (frames repeat)" in " ".join(f["message"] for f in found["frames"])
    assert "it does not add negatives" in found["accumulation"][0]["message"]


def test_model_checks_find_bf16_parameters_frozen_heads_and_temperatures(monkeypatch, tmp_path):
    config = load_config(demo_config_path(), ["--model.tiny", "{vision_width: 32, text_width: 32, heads: 2}"])
    tokenizer = builders.build_tokenizer(config.model)
    model, _ = builders.build_model(config.model, tokenizer)
    model.to(torch.bfloat16)
    model.roi_projection.requires_grad_(False)
    with torch.no_grad():
        model.logit_scale.fill_(1.0)  # x2.7: far too soft for cosine similarities
    monkeypatch.setattr(builders, "build_model", lambda section, tokenizer: (model, None))
    findings = run_doctor(config, read_data=False)
    messages = {(f.severity, f.check): f.message for f in findings}
    assert "trainable parameters in torch.bfloat16" in messages[("error", "precision")]
    assert (
        messages[("error", "heads.frozen")]
        == "roi_projection is frozen but the region and hard_negative loss trains it"
    )
    assert "logit_scale start below x10" in messages[("warning", "temperatures")]


@pytest.mark.parametrize("layout", ["path", "ucf_annotation_line"])
def test_doctor_and_train_agree_on_leakage(tiny_synth, tmp_path, layout):
    """One test-list reading for both: a path line, or a UCF-style temporal-annotation line (`Name  Class
    s1 e1 s2 e2`), which the doctor's own `Path(line).stem` rule once missed while train refused it."""
    clips = read_clips(load_config(None, _data_args(tiny_synth)).data, [str(tiny_synth / "train.json")])
    video = clips[0].video
    test_list = tmp_path / "test_list.txt"
    line = f"Elsewhere/{video.name}" if layout == "path" else f"{video.stem}  Abuse  10  20  -1  -1"
    test_list.write_text(f"{line}\nOther/Unrelated001_x264.mp4\n")
    config = load_config(None, [*_data_args(tiny_synth), "--data.test_list", str(test_list)])
    findings = [f for f in run_doctor(config, read_data=True) if f.check == "leakage"]
    assert [f.severity for f in findings] == ["error"] and video.stem in findings[0].message
    with pytest.raises(ConfigError, match="Refusing to train on test videos"):
        checks.check_leakage(config.data, clips)


@pytest.mark.parametrize("flag", ["--no-data"])
def test_doctor_without_data_checks_the_config_alone(tmp_path, capsys, flag):
    argv = ["doctor", str(demo_config_path()), "--output_dir", str(tmp_path), flag, "--json"]
    assert main(argv) == 0
    checks = set(_findings(capsys))
    assert "leakage" not in checks and "frames" not in checks
    assert "negatives.region" in checks  # upper bound from data.max_regions
