"""Exact resume: 10 optimizer steps straight equal 5 steps, `--resume latest`, 5 more (CPU, deterministic).

The run uses gradient accumulation (2 micro-batches of 2 clips), crosses epoch boundaries (6 clips -> 3 steps
per epoch; the resume lands inside epoch 1) and switches the memory bank on at step 3, so the resumed half
needs the restored weights, optimizer moments, LR schedule, bank buffers and the sampler position.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from fgclip.cli import main
from fgclip.config import ConfigError, load_config
from fgclip.tools import training_run as run
from fgclip.training.checkpoints import (
    STAGING_DIR,
    latest_checkpoint,
    list_checkpoints,
    promote,
    rotate_checkpoints,
    staging_path,
)

RUN = (
    "--max_steps",
    "10",
    "--per_device_batch_size",
    "2",
    "--gradient_accumulation_steps",
    "2",
    "--save_steps",
    "5",
    "--save_total_limit",
    "3",
    "--train.warmup_steps",
    "2",
    "--bank.warmup_steps",
    "3",
    "--bank.size",
    "8",
)


FRESH_AND_MOMENTUM = ("--bank.fresh_text", "4", "--bank.momentum", "0.9")


@pytest.mark.parametrize("bank_options", [(), FRESH_AND_MOMENTUM], ids=["bank", "fresh_text+momentum"])
def test_ten_steps_equal_five_resume_five(
    tiny_synth, tmp_path, train_args, read_rows, run_dir_after, bank_options
):
    """With fresh text and momentum the bank also holds caption ids and the EMA shadow; both must resume."""
    run_args = (*RUN, *bank_options)
    straight = tmp_path / "straight"
    assert main(train_args(tiny_synth, straight, *run_args)) == 0

    resumed = run_dir_after(straight, 5, tmp_path / "resumed")  # checkpoint-5 and 5 rows
    assert main(train_args(tiny_synth, resumed, *run_args, "--resume", "latest")) == 0

    final_straight = load_file(straight / "checkpoint-10" / "model.safetensors")
    final_resumed = load_file(resumed / "checkpoint-10" / "model.safetensors")
    assert final_straight.keys() == final_resumed.keys()
    bank_keys = [k for k in final_straight if k.startswith("memory_bank.")]
    assert bank_keys and final_straight["memory_bank.enabled"].item() is True
    if bank_options:
        assert final_straight["memory_bank.caption_ids"].any()
        assert final_straight["memory_bank.momentum_encoder.updated_at"].item() == 9
    for key in final_straight:
        assert torch.equal(final_straight[key], final_resumed[key]), f"{key} differs after resume"
    moments = [torch.load(d / "checkpoint-10" / "optimizer.pt")["state"] for d in (straight, resumed)]
    for index, state in moments[0].items():
        assert torch.equal(state["exp_avg_sq"], moments[1][index]["exp_avg_sq"]), f"optimizer state {index}"

    # metrics.jsonl was appended to, not truncated: steps 1..10, the resumed half logging what the straight run did
    straight_rows, resumed_rows = read_rows(straight), read_rows(resumed)
    assert [r["step"] for r in resumed_rows] == list(range(1, 11))
    for a, b in zip(straight_rows[5:], resumed_rows[5:], strict=True):
        assert a["loss"] == b["loss"] and a["memory_bank/size"] == b["memory_bank/size"], a["step"]
        assert a["lr"] == b["lr"]


def test_new_run_refuses_an_output_dir_with_checkpoints(tmp_path):
    (tmp_path / "checkpoint-200").mkdir()
    config = load_config(None, ["--train.output_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="already holds a run \\(checkpoint-200\\).*--resume latest"):
        run.resolve_resume(config)


def test_overwrite_output_dir_removes_the_earlier_run(tiny_synth, tmp_path, train_args, read_rows):
    out = tmp_path / "run"
    assert main(train_args(tiny_synth, out, "--max_steps", "2", "--per_device_batch_size", "3")) == 0
    assert main(train_args(tiny_synth, out, "--max_steps", "1", "--per_device_batch_size", "3")) == 1
    (out / "notes.txt").write_text("mine")
    args = train_args(tiny_synth, out, "--max_steps", "1", "--per_device_batch_size", "3")
    assert main([*args, "--overwrite_output_dir"]) == 0
    assert [r["step"] for r in read_rows(out)] == [1]  # a fresh log, not the old one appended
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-1"]
    assert (out / "notes.txt").read_text() == "mine"  # only what fgclip wrote is removed


def _fake_checkpoint(output_dir, step, config_overrides=()):
    checkpoint = output_dir / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    for name in (
        "model.safetensors",
        "optimizer.pt",
        "scheduler.pt",
    ):  # present (their reading is tested apart)
        (checkpoint / name).write_bytes(b"")
    load_config(None, list(config_overrides)).save(checkpoint / "fgclip_config.yaml")
    return checkpoint


def test_latest_checkpoint_is_numeric_and_skips_incomplete_folders(tmp_path):
    for step in (200, 1000, 30):
        _fake_checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-1500").mkdir()  # no trainer_state.json: a save from before staging, cut short
    (tmp_path / ".staging" / "checkpoint-2000").mkdir(parents=True)
    assert latest_checkpoint(tmp_path).name == "checkpoint-1000"
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "checkpoint-30",
        "checkpoint-200",
        "checkpoint-1000",
        "checkpoint-1500",
    ]


def test_resume_with_other_model_or_loss_settings_is_refused(tmp_path):
    _fake_checkpoint(
        tmp_path, 5, ["--bank.size", "32", "--loss.region_weight", "1.0", "--train.lora", "{rank: 4}"]
    )
    config = load_config(
        None,
        [
            "--train.output_dir",
            str(tmp_path),
            "--resume",
            "latest",
            "--bank.size",
            "64",
            "--loss.region_weight",
            "0.5",
            "--learning_rate",
            "3e-4",  # train settings may change on resume
            "--train.lora",
            "{rank: 8}",  # but not the LoRA adapters the checkpoint holds
        ],
    )
    with pytest.raises(ConfigError) as error:
        run.resolve_resume(config)
    message = str(error.value)
    assert "bank.size: checkpoint 32, now 64" in message
    assert "loss.region_weight: checkpoint 1.0, now 0.5" in message
    assert "train.lora.rank: checkpoint 4, now 8" in message
    assert "learning_rate" not in message


def test_resume_accepts_a_default_written_out(tmp_path):
    _fake_checkpoint(tmp_path, 5)
    config = load_config(
        None, ["--train.output_dir", str(tmp_path), "--resume", "latest", "--bank.size", "128"]
    )
    assert run.resolve_resume(config).name == "checkpoint-5"


def test_rotation_is_by_step_number_not_modification_time(tmp_path):
    """HF 5.x rotates with `use_mtime=True`; a checkpoint touched later (copied back, restored from a backup)
    would then outlive a newer step. fgclip rotates by step number."""
    old_big, new_small = _fake_checkpoint(tmp_path, 1000), _fake_checkpoint(tmp_path, 200)
    os.utime(old_big, (1_000_000, 1_000_000))
    os.utime(new_small, (2_000_000, 2_000_000))
    assert [p.name for p in rotate_checkpoints(tmp_path, keep=1)] == ["checkpoint-200"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-1000"]


def test_promote_replaces_a_checkpoint_of_the_same_step(tmp_path):
    """Resuming from an older checkpoint re-saves later steps: the new folder takes the old one's place."""
    final = _fake_checkpoint(tmp_path, 10)
    (final / "old.txt").write_text("old")
    staged = staging_path(final)
    staged.mkdir(parents=True)
    (staged / "new.txt").write_text("new")
    promote(staged, final)
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert not (tmp_path / STAGING_DIR).exists()


# ------------------------------------------------------------------ resume is the same run, or is refused
def _manifest(path, entries: int):
    clip = {
        "video": "v.mp4",
        "global_caption": "a car",
        "region_captions": [],
        "box_infos": [],
        "timestamps": [0, 1],
    }
    path.write_text(json.dumps([clip] * entries))
    return str(path)


def _checkpoint_with_data(output_dir, manifest, overrides=()):
    from fgclip.training.checkpoints import DATA_FINGERPRINT_FILE, data_fingerprint

    args = ["--data.train_manifests", json.dumps([manifest]), *overrides]
    checkpoint = _fake_checkpoint(output_dir, 5, args)
    fingerprint = data_fingerprint(load_config(None, args).data)
    (checkpoint / DATA_FINGERPRINT_FILE).write_text(json.dumps(fingerprint))
    return checkpoint


CHANGES = [  # (override, the field named in the refusal)
    (("--per_device_batch_size", "4"), "train.per_device_batch_size: checkpoint 8, now 4"),
    (("--gradient_accumulation_steps", "2"), "train.gradient_accumulation_steps: checkpoint 1, now 2"),
    (("--data.num_frames", "4"), "data.num_frames: checkpoint 8, now 4"),
    (("--data.max_regions", "2"), "data.max_regions: checkpoint 4, now 2"),
    (("--train.seed", "7"), "train.seed: checkpoint 42, now 7"),
    (("--train.lr_scheduler", "linear"), "train.lr_scheduler: checkpoint 'cosine', now 'linear'"),
    (("--train.learning_rate", "3e-4"), "train.learning_rate: checkpoint 1e-05, now 0.0003"),
    (("--train.head_lr", "1e-3"), "train.head_lr: checkpoint None, now 0.001"),
    (("--train.max_steps", "2000"), "train.max_steps: checkpoint 1000, now 2000"),
    (("--data.balance", "true"), "data.balance: checkpoint False, now True"),
]


def test_resume_with_other_order_trajectory_or_step_settings_is_refused_listing_them(tmp_path):
    checkpoint = _checkpoint_with_data(tmp_path / "run", _manifest(tmp_path / "m.json", 4))
    overrides = [a for change, _ in CHANGES for a in change]
    base = ["--train.output_dir", str(tmp_path / "run"), "--resume", "latest",
            "--data.train_manifests", json.dumps([str(tmp_path / "m.json")])]  # fmt: skip
    with pytest.raises(ConfigError) as error:
        run.resolve_resume(load_config(None, [*base, *overrides]))
    message = str(error.value)
    assert message.startswith(f"cannot resume {checkpoint}: this would be another run")
    for _, field in CHANGES:
        assert field in message, field
    assert "--resume-changed" in message
    free = [
        "--save_steps",
        "7",
        "--logging_steps",
        "3",
        "--data.num_workers",
        "2",
        "--train.signal_grace_s",
        "9",
        "--train.report_to",
        "[]",
    ]
    assert (
        run.resolve_resume(load_config(None, [*base, *free])) == checkpoint
    )  # logging, saving, workers: free


def test_resume_compares_the_manifests_by_content_not_path(tmp_path):
    manifest = _manifest(tmp_path / "m.json", 4)
    _checkpoint_with_data(tmp_path / "run", manifest)
    moved = tmp_path / "elsewhere" / "m.json"
    moved.parent.mkdir()
    moved.write_bytes((tmp_path / "m.json").read_bytes())
    base = ["--train.output_dir", str(tmp_path / "run"), "--resume", "latest"]
    config = load_config(None, [*base, "--data.train_manifests", json.dumps([str(moved)])])
    assert run.resolve_resume(config).name == "checkpoint-5"  # the same bytes at another path: the same run

    _manifest(moved, 2)  # half the entries, same file name
    with pytest.raises(
        ConfigError, match=r"data.train_manifests content: checkpoint \[m.json sha256 [0-9a-f]{12}\]"
    ):
        run.resolve_resume(config)
    accepted: list[str] = []
    run.resolve_resume(load_config(None, [*base, "--data.train_manifests", json.dumps([str(moved)]),
                                          "--resume_changed", "true"]), accepted)  # fmt: skip
    assert len(accepted) == 1 and accepted[0].startswith("data.train_manifests content")


def test_resume_changed_is_logged_recorded_and_keeps_the_original_config(
    tiny_synth, tmp_path, train_args, capsys
):
    out = tmp_path / "run"
    steps = ("--max_steps", "2", "--per_device_batch_size", "3", "--save_steps", "2")
    assert main(train_args(tiny_synth, out, *steps)) == 0
    original = (out / "fgclip_config.yaml").read_text()
    longer = (*steps, "--max_steps", "3", "--learning_rate", "5e-4", "--resume", "latest")
    capsys.readouterr()
    assert main(train_args(tiny_synth, out, *longer)) == 1  # refused: another schedule and rate
    err = capsys.readouterr().err
    assert "train.max_steps: checkpoint 2, now 3" in err and "train.learning_rate" in err
    assert "Traceback" not in err

    assert main([*train_args(tiny_synth, out, *longer), "--resume-changed"]) == 0
    logged = [line for line in capsys.readouterr().out.splitlines() if "accepted changed setting" in line]
    assert len(logged) == 2 and "train.max_steps: checkpoint 2, now 3" in logged[0] + logged[1]
    [row] = [json.loads(line) for line in (out / "resume_changes.jsonl").read_text().splitlines()]
    assert row["checkpoint"] == str(out / "checkpoint-2") and len(row["changes"]) == 2
    assert (out / "fgclip_config.yaml").read_text() == original  # never overwritten
    resumed = load_config(out / "fgclip_config.resume-2.yaml")
    assert (resumed.train.max_steps, resumed.train.learning_rate) == (3, 5e-4)
    assert (
        load_config(out / "checkpoint-3" / "fgclip_config.yaml").train.max_steps == 3
    )  # the next resume's base
