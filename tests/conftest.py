"""Shared fixtures: a tiny synthetic benchmark on disk and a tiny training run through the real CLI."""

import json
import shutil
from pathlib import Path

import pytest

from fgclip.cli import main
from fgclip.configs import demo_config_path

TINY_MODEL = (
    "{image_size: 32, patch_size: 8, vision_width: 32, vision_layers: 2, text_width: 32, text_layers: 1, "
    "heads: 2, projection_dim: 32}"
)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(autouse=True)
def _probe_index_in_tmp(tmp_path_factory, monkeypatch):
    """The start-up video probe keeps its index under $FGCLIP_CACHE_DIR: a test never writes to ~/.cache."""
    monkeypatch.setenv("FGCLIP_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "fgclip_cache"))


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_synth")
    assert main(["data", "synth", "--out", str(out), "--num-videos", "12", "--seed", "1"]) == 0
    return out


@pytest.fixture(scope="session")  # a function: module-scoped fixtures train with it too
def train_args():
    return _train_args


@pytest.fixture
def read_rows():
    return _read_rows


@pytest.fixture
def run_dir_after():
    return _run_dir_after


def _run_dir_after(straight: Path, step: int, resumed: Path) -> Path:
    """`resumed` holding what the straight run's dir held after `step`: that checkpoint, the run config and
    the first `step` metrics rows (one per step) -- a run killed right after saving it, ready to resume."""
    resumed.mkdir()
    shutil.copytree(straight / f"checkpoint-{step}", resumed / f"checkpoint-{step}")
    shutil.copy(straight / "fgclip_config.yaml", resumed / "fgclip_config.yaml")
    rows = (straight / "metrics.jsonl").read_text().splitlines()
    (resumed / "metrics.jsonl").write_text("\n".join(rows[:step]) + "\n")
    return resumed


def _train_args(synth: Path, output_dir: Path, *overrides: str) -> list[str]:
    """`fgclip train` on the demo config with a tiny model and the tiny synthetic set."""
    return [
        "train",
        str(demo_config_path()),
        "--data.train_manifests",
        json.dumps([str(synth / "train.json")]),
        "--data.hard_negatives",
        json.dumps([str(synth / "hard_negatives.json")]),
        "--data.video_root",
        str(synth),
        "--data.num_workers",
        "0",
        "--model.tiny",
        TINY_MODEL,
        "--output_dir",
        str(output_dir),
        "--progress_bar",
        "false",
        "--logging_steps",
        "1",
        "--train.warmup_steps",  # the demo's 30 would outlast these short runs, which train refuses
        "0",
        # the demo trains without a bank; training tests exercise it (a test's own overrides come later and win)
        "--bank.size",
        "32",
        "--bank.warmup_steps",
        "0",
        *overrides,
    ]


def _read_rows(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
