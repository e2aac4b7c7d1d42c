"""The bank inside real training runs: switch-on by optimizer step, fill policy, checkpointed contents."""

import pytest
import torch
from safetensors.torch import load_file

from fgclip.cli import main


@pytest.mark.parametrize("accumulation", [1, 4, 8])
def test_switch_on_counts_optimizer_steps_not_forward_calls(
    tiny_synth, tmp_path, capsys, accumulation, train_args, read_rows
):
    run = tmp_path / "run"
    args = train_args(
        tiny_synth,
        run,
        "--max_steps",
        "4",
        "--per_device_batch_size",
        "2",
        "--gradient_accumulation_steps",
        str(accumulation),
        "--bank.warmup_steps",
        "2",
        "--bank.size",
        "16",
        "--save_steps",
        "100",
    )
    assert main(args) == 0
    rows = read_rows(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    # updates 1..2 are the warm-up; update 3 is the first trained with the bank
    assert [r["memory_bank/enabled"] for r in rows] == [0.0, 0.0, 1.0, 1.0]  # the line's "from step 3"
    assert rows[0]["memory_bank/negatives_per_query"] == 0 and rows[2]["memory_bank/negatives_per_query"] > 0
    assert rows[1]["memory_bank/size"] > 0  # filled during warm-up (the default)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[memory bank]")]
    assert lines == [lines[0]] and lines[0].startswith(
        "[memory bank] enabled from step 3 (after 2 warm-up steps): capacity 16, filled"
    )


def test_no_fill_during_warmup_when_asked(tiny_synth, tmp_path, train_args, read_rows):
    run = tmp_path / "run"
    assert (
        main(
            train_args(
                tiny_synth,
                run,
                "--max_steps",
                "3",
                "--per_device_batch_size",
                "2",
                "--bank.warmup_steps",
                "2",
                "--bank.fill_during_warmup",
                "false",
                "--save_steps",
                "100",
            )
        )
        == 0
    )
    rows = read_rows(run)
    assert [r["memory_bank/size"] for r in rows][:2] == [0.0, 0.0]
    assert rows[2]["memory_bank/enabled"] == 1.0


def test_bank_is_saved_with_the_checkpoint(tiny_synth, tmp_path, train_args):
    run = tmp_path / "run"
    assert (
        main(
            train_args(
                tiny_synth,
                run,
                "--max_steps",
                "3",
                "--per_device_batch_size",
                "4",
                "--bank.warmup_steps",
                "1",
                "--bank.size",
                "8",
                "--save_steps",
                "3",
            )
        )
        == 0
    )
    state = load_file(run / "checkpoint-3" / "model.safetensors")
    assert state["memory_bank.enabled"].item() is True
    assert int((state["memory_bank.steps"] >= 0).sum()) == 8  # 12 regions written into 8 slots
    assert state["memory_bank.steps"].max().item() == 2  # written during step 3, i.e. after 2 updates
    final = load_file(run / "model" / "model.safetensors")
    assert torch.equal(final["memory_bank.image_embeds"], state["memory_bank.image_embeds"])
