"""A torn `metrics.jsonl` line (a crash or a full disk mid-write) is reported and skipped; it never costs a
save, the end of training or the final `model/`; the loss-curve plot never fails a run."""

from __future__ import annotations

import json

from fgclip.cli import main
from fgclip.training.callbacks import METRICS_FILE, PLOT_FILE, LossCurvePlot
from fgclip.training.loss_plot import read_metrics

TORN = '{"step": 3, "epoch": 1.0, "lo'


def test_torn_line_is_skipped_and_named(tmp_path):
    path = tmp_path / METRICS_FILE
    rows = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 4)]
    path.write_text(f"{rows[0]}\n{rows[1]}\n{TORN}\n[1, 2]\n{rows[2]}\n")
    warnings: list[str] = []
    assert [r["step"] for r in read_metrics(path, warnings.append)] == [1, 2, 4]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"{path}:3: torn line skipped")
    assert warnings[1].startswith(f"{path}:4: torn line skipped")


def test_plot_failure_is_one_line_and_not_raised(tmp_path, capsys):
    (tmp_path / METRICS_FILE).write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    (tmp_path / PLOT_FILE).mkdir()  # savefig cannot write over a directory
    LossCurvePlot(tmp_path, None)._plot()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"warning: {tmp_path / PLOT_FILE} not written (")
    assert err[0].endswith("training goes on")


def test_resume_after_a_torn_line_writes_model(tiny_synth, tmp_path, train_args, capsys):
    out = tmp_path / "run"
    common = ("--per_device_batch_size", "3", "--save_steps", "2")
    assert main(train_args(tiny_synth, out, "--max_steps", "2", *common)) == 0
    metrics = out / METRICS_FILE
    with metrics.open("a") as f:
        f.write(TORN)  # the crash: step 3's row cut mid-write, no newline
    capsys.readouterr()

    argv = train_args(
        tiny_synth, out, "--max_steps", "4", *common, "--resume", "latest", "--resume-changed"
    )  # a longer schedule
    assert main(argv) == 0
    assert (out / "model").is_dir() and (out / "checkpoint-4").is_dir()
    err = capsys.readouterr().err
    assert f"{metrics}: the last line was cut short" in err
    assert err.count(f"{metrics}:3: torn line skipped") == 1  # reported once, though plotted at 2 saves
    lines = metrics.read_text().splitlines()
    assert lines[2] == TORN and json.loads(lines[3])["step"] == 3  # step 3 re-logged on a line of its own
    assert [r["step"] for r in read_metrics(metrics, lambda _: None)] == [1, 2, 3, 4]
    assert (out / PLOT_FILE).is_file()
