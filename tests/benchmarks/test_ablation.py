"""benchmarks/ablation.py: its statistics on known answers and planted patterns, its tables from run files, and
(slow) its --quick smoke run end to end through the process pool."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fgclip import builders

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ablation"] = module  # the process pool pickles its functions by module name
    spec.loader.exec_module(module)
    return module


def test_t_interval_is_the_textbook_one(ablation):
    mean, low, high = ablation.t_interval([1.0, 2.0, 3.0])
    # sd 1, n 3, t(0.975, 2) = 4.3027: half-width 4.3027 / sqrt(3) = 2.4841
    assert (
        mean == 2.0
        and low == pytest.approx(2.0 - 2.4841, abs=1e-4)
        and high == pytest.approx(4.4841, abs=1e-4)
    )


def test_frame_metrics_agree_with_sklearn_ties_included(ablation):
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(0)
    truth = [rng.random(50) < 0.3 for _ in range(3)]
    scores = [np.round(rng.random(50), 1) for _ in range(3)]  # many ties
    y, s = np.concatenate(truth), np.concatenate(scores)
    assert ablation.frame_metric(truth, scores, "auc") == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert ablation.frame_metric(truth, scores, "ap") == pytest.approx(
        average_precision_score(y, s), abs=1e-12
    )


def _videos(seed: int, count: int = 40, frames: int = 30) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(count):
        labels = np.zeros(frames, dtype=np.int8)
        if i % 2:
            start = rng.integers(0, frames - 10)
            labels[start : start + 10] = 1
        truth[f"v{i:02d}"] = labels
    return truth


def test_bootstrap_separates_a_planted_detector_from_noise(ablation):
    truth = _videos(0)
    rng = np.random.default_rng(1)
    perfect = {v: y + 0.1 * rng.random(len(y)) for v, y in truth.items()}  # AUC 1
    noise = [{v: rng.random(len(y)) for v, y in truth.items()} for _ in range(2)]  # AUC ~0.5, two seeds
    heads = {v: np.stack([s, s]) for v, s in perfect.items()}  # (head seeds, frames): mean of identical heads
    rows = {"noise": noise, "perfect": [perfect, perfect], "perfect head": [heads, heads], "same": noise}
    result = ablation.bootstrap(truth, rows, "auc", reference="noise", resamples=100)
    assert result["perfect"]["interval"] == pytest.approx((1.0, 1.0))
    assert result["perfect head"]["interval"] == pytest.approx((1.0, 1.0))
    low, high = result["noise"]["interval"]
    assert 0.4 < low < 0.5 < high < 0.6
    assert result["perfect"]["difference_interval"][0] > 0.4  # paired over the same resamples: clearly above
    assert result["same"]["difference_interval"] == (0.0, 0.0)  # a row equal to the reference differs by 0
    assert "difference_interval" not in result["noise"]


def _write_run(ablation, out: Path, row: str, seed: int, shift: float, truth: dict, rng) -> None:
    metrics = {key: 0.5 + shift + 0.01 * seed for key, _ in ablation.METRICS}
    head_runs = [{"seed": 0, "steps": 10, "best_step": 5, "auc": 0.5, "ap": 0.5}]
    result = {"row": row, "seed": seed, "seconds_per_step": 1.0, "splits": {}}
    scores = {}
    for split in ("validation", "test"):
        chances = {"hard_negative_chance": 0.25, "loc_pointing_chance": 0.1, "loc_object_chance": 0.4}
        result["splits"][split] = {**metrics, **chances, "head_runs": head_runs}
        if row == "+ region" and seed == 2:  # a run from before the localization evaluator
            result["splits"][split].pop("loc_iou")
        zero_shot = {v: y * shift + rng.random(len(y)) for v, y in truth.items()}
        scores[split] = {"zs": zero_shot, "head": {v: s[None] for v, s in zero_shot.items()}}
    ablation.save_run(out, result, scores)


def test_summary_pairs_seeds_and_reports_differences(ablation, tmp_path):
    truth = _videos(2, count=8, frames=20)
    for split in ("train", "test"):  # the annotations the summary reads the frame truth from
        root = tmp_path / "data" / split
        root.mkdir(parents=True)
        lines = []
        for name, y in truth.items():
            frames = np.flatnonzero(y)
            event = (
                f"Flashing  {frames[0]}  {frames[-1]}  -1  -1" if len(frames) else "Normal  -1  -1  -1  -1"
            )
            lines.append(f"{name}.mp4  {event}\n")
        (root / "test_annotation.txt").write_text("".join(lines))
    rng = np.random.default_rng(3)
    for seed in (0, 1, 2):
        _write_run(ablation, tmp_path, "global only", seed, 0.0, truth, rng)
        _write_run(ablation, tmp_path, "+ region", seed, 0.6 if seed else 0.5, truth, rng)
    _write_run(ablation, tmp_path, "+ region + hard-neg", 0, 0.3, truth, rng)  # one seed only: left out
    data = ablation.Data(tmp_path / "data" / "train", tmp_path / "data" / "test")
    summary = ablation.summarise(tmp_path, data, ["global only", "+ region"], [0, 1, 2, 3], "global only", 50)
    assert summary["seeds"] == [0, 1, 2]  # seed 3 never ran: pairs stay pairs
    assert "loc_iou" not in summary["metrics"]["test"] and "loc_pointing" in summary["metrics"]["test"]
    cell = summary["splits"]["test"]["+ region"]["clip_r1"]
    assert cell["mean"] == pytest.approx(0.5 + 1.7 / 3 + 0.01)
    diff = cell["difference"]
    assert diff["mean"] == pytest.approx(1.7 / 3) and diff["sd"] == pytest.approx(
        np.std([0.5, 0.6, 0.6], ddof=1)
    )
    assert diff["t95"][0] < diff["mean"] < diff["t95"][1]
    assert diff["resolution"] == pytest.approx((diff["t95"][1] - diff["t95"][0]) / 2)
    bootstrap = summary["splits"]["test"]["+ region"]["zs_auc"]["bootstrap"]
    assert bootstrap["difference_interval"][0] > 0  # the planted score shift is found over videos
    choice = ablation.choose_default(summary)  # + region: +0.57 on every metric, so it qualifies
    assert choice["chosen"] == "+ region" and choice["met_goal"]
    assert choice["verdicts"] == {"+ region": "meets the goal's region and hard-negative gains"}
    # the README's view: the test columns; the untrimmed split is absent from these runs
    compact = ablation.format_compact(summary).splitlines()
    assert "untrimmed" not in compact[2] and compact[4].startswith("| + region | +0.567 [")
    assert len(compact) == 5  # the reference has no difference row
    text = ablation.format_tables(summary)
    assert (
        "**test**" in text and "| + region |" in text and "Chance: hard-negative 1 / (K + 1) = 0.250" in text
    )


@pytest.mark.slow
def test_quick_run_end_to_end(ablation, tmp_path, capsys):
    assert ablation.main(["--out", str(tmp_path), "--quick"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["rows"] == [
        "stand-in",
        "global only",
        "+ region + hard-neg",
    ]
    test = summary["splits"]["test"]
    assert test["stand-in"]["seconds_per_step"] is None and test["global only"]["seconds_per_step"] > 0
    assert test["stand-in"]["zs_auc"]["sd"] == 0.0  # untrained: one model for every seed
    assert "difference" in test["+ region + hard-neg"]["region_t2r"]
    assert "| + region + hard-neg |" in (tmp_path / "table.md").read_text()
    untrimmed = summary["splits"]["untrimmed"]  # long test videos: frame-level columns only
    assert summary["metrics"]["untrimmed"] == ["zs_auc", "zs_ap", "head_auc", "head_ap"]
    assert 0 <= untrimmed["global only"]["head_auc"]["mean"] <= 1
    # --untrimmed-saved rebuilds a run's untrimmed columns from its saved model and training features: the
    # heads are trained again with their seeds and must give the same numbers
    path = tmp_path / "runs" / "global_only_s1.json"
    run = json.loads(path.read_text())
    before = run["splits"].pop("untrimmed")
    path.write_text(json.dumps(run))
    assert ablation.main(["--out", str(tmp_path), "--quick", "--untrimmed-saved"]) == 0
    again = json.loads(path.read_text())
    assert again["heads_reproduced"] and again["splits"]["untrimmed"] == before
    # the shared embeddings score exactly as `fgclip eval` does on its own
    run = json.loads((tmp_path / "runs" / "stand_in_s0.json").read_text())["splits"]["test"]
    args = ablation.parse_args(["--out", str(tmp_path), "--quick"])
    data = ablation.Data(tmp_path / "data" / "train", tmp_path / "data" / "test")
    config = ablation.config_for(ablation.ROWS["stand-in"], 0, data, "test", tmp_path / "check", args)
    tokenizer = builders.build_tokenizer(config.model)
    model, _ = builders.build_model(config.model, tokenizer)
    metrics, _ = ablation.evaluate(config, model, tokenizer)
    assert metrics["zs_auc"] == run["zs_auc"] and metrics["region_t2r"] == run["region_t2r"]
