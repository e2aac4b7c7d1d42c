"""Experiment tracking: `train.report_to` reaches HF's integration callbacks (MLflow, offline in a file store)
with every metrics.jsonl row, metrics.jsonl is still written, and TensorBoard only when asked for."""

from __future__ import annotations

import json

import pytest

from fgclip.builders import hf_report_to
from fgclip.config import ConfigError, load_config
from fgclip.tools import training_run as run
from fgclip.training.callbacks import TRACKER_RENAMES, tracker_logs


def test_report_to_names_are_hf_integrations():
    assert hf_report_to(["tensorboard"]) == []  # fgclip writes TensorBoard itself
    assert hf_report_to(["tensorboard", "mlflow", "wandb", "mlflow"]) == ["mlflow", "wandb"]
    with pytest.raises(ConfigError, match=r"train.report_to: unknown tracker\(s\) \['mlfow'\]; HF Trainer"):
        hf_report_to(["mlfow"])


def test_mlflow_receives_every_metrics_row(tiny_synth, tmp_path, train_args, read_rows, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="needs the optional extra: pip install 'fgclip[mlflow]'")
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())  # a local file store: no server, no network
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "fgclip-test")
    out = tmp_path / "run"
    argv = train_args(tiny_synth, out, "--max_steps", "3", "--per_device_batch_size", "3", "--save_steps", "3",
                      "--train.report_to", json.dumps(["mlflow"]))  # fmt: skip
    run.train(load_config(argv[1], argv[2:]))
    rows = read_rows(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert not (out / "tensorboard").exists()  # not in report_to

    client = mlflow.tracking.MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("fgclip-test")
    (logged_run,) = client.search_runs([experiment.experiment_id])
    logged = set(client.get_run(logged_run.info.run_id).data.metrics)
    numeric = {k for k, v in rows[0].items() if k != "step" and isinstance(v, (int, float))}
    assert {TRACKER_RENAMES.get(k, k) for k in numeric} <= logged  # every number of the row, none lost
    for name in ("loss", "loss/region", "lr", "lr/text", "samples_per_s", "memory_bank/size"):
        tracked = TRACKER_RENAMES.get(name, name)  # "loss" beside "loss/region" is "loss/total" there
        history = sorted(client.get_metric_history(logged_run.info.run_id, tracked), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2, 3], name
        assert [m.value for m in history] == pytest.approx([r[name] for r in rows], rel=1e-6), name


def test_tracker_names_never_collide_with_groups():
    row = {
        "step": 4,
        "loss": 1.0,
        "loss/region": 0.5,
        "lr": 1e-3,
        "lr/text": 1e-4,
        "x": 2,
        "x/y": 3,
        "note": "a",
    }
    assert tracker_logs(row) == {"loss/total": 1.0, "loss/region": 0.5, "lr/main": 1e-3, "lr/text": 1e-4,
                                 "x/value": 2, "x/y": 3}  # fmt: skip
