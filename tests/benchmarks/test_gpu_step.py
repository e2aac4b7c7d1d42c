"""benchmarks/gpu_step.py cannot run without a GPU here: its CPU dry run (tiny config) and its no-CUDA exit."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_step.py"


@pytest.fixture(scope="module")
def gpu_step():
    spec = importlib.util.spec_from_file_location("gpu_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_trains_two_steps_and_reports_every_figure(gpu_step, capsys):
    assert gpu_step.main(["--dry-run"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["device"] == "cpu (dry run)" and result["batch"].startswith("2 clips x 2 frames")
    assert result["clips_per_s"] > 0 and result["frames_per_s"] == pytest.approx(
        2 * result["clips_per_s"], rel=0.01
    )
    assert result["tflops_per_step"] > 0 and result["eval_frames_per_s"] > 0
    assert (
        result["peak_gpu_memory_gib"] is None and result["share_of_peak"] is None
    )  # no device peak on a CPU
    assert torch.isfinite(torch.tensor(result["final_loss"]))


def test_the_flop_count_is_the_documented_formula(gpu_step):
    feed = gpu_step._sibling("feed_rate")
    vit_b16 = {"patch_size": 16, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12}
    # 197 tokens x 12 layers x (12 d^2 + 2 n d) MACs + the 196-patch embedding, x 2 FLOPs per MAC.
    expected = 2 * (12 * 197 * (12 * 768**2 + 2 * 197 * 768) + 196 * 768 * 768)
    assert feed.vision_flops_per_frame(vit_b16) == expected
    assert (
        34.9e9 < expected < 35.3e9
    )  # ~17.6 G multiply-accumulates: the "17.5 GFLOPs" usually quoted are MACs


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="a CUDA device is present: the script would run for real"
)
def test_without_cuda_it_exits_with_a_clear_message(gpu_step, capsys):
    assert gpu_step.main([]) == 1
    assert "gpu_step.py: no CUDA device" in capsys.readouterr().err
