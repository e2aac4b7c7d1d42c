"""Files fgclip wrote and reads back, damaged (truncated, garbage, wrong type): the real command gives one line
naming the file and what is wrong, with the way out; never a traceback.

One tiny training run (2 steps, a checkpoint at each) and one tiny head on planted features are made per module;
each case copies them, damages one file and runs the command that reads it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fgclip.cli import main
from fgclip.head.synthetic import write_planted_features

STEPS = ("--max_steps", "2", "--per_device_batch_size", "3", "--save_steps", "1", "--save_total_limit", "3")
HEAD_RECIPE = ["--steps", "4", "--eval-every", "2", "--batch-size", "8", "--hidden-dim", "8", "--window", "2"]


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_synth, train_args):
    root = tmp_path_factory.mktemp("read_back")
    run = root / "run"
    assert main(train_args(tiny_synth, run, *STEPS)) == 0
    features = write_planted_features(root / "features", seed=0, num_train=16, num_test=6, snippets=(12, 20),
                                      strength=1.0)  # fmt: skip
    head = root / "head"
    assert main(["head", "train", str(features.features), "--labels", str(features.train_list), "--out", str(head),
                 *HEAD_RECIPE]) == 0  # fmt: skip
    return {"synth": tiny_synth, "run": run, "features": features, "head": head}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(len(path.read_bytes()) // 2, 1)])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xff garbage \x89PNG" * 7)


def _text(content: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(content)


@dataclass(frozen=True)
class Case:
    name: str
    file: str  # relative to the copied run / head / features folder
    damage: Callable[[Path], None]
    says: tuple[str, ...]


RESUME = [
    Case("config garbage", "checkpoint-1/fgclip_config.yaml", _text("model: [unclosed\n"), ("damaged run config",)),
    Case("config a list", "checkpoint-1/fgclip_config.yaml", _text("- 1\n- 2\n"), ("not a mapping",)),
    Case("trainer state truncated", "checkpoint-1/trainer_state.json", _truncate, ("damaged trainer state",)),
    Case("trainer state wrong type", "checkpoint-1/trainer_state.json", _text('{"global_step": "two"}'),
         ("damaged trainer state", "global_step")),
    Case("weights truncated", "checkpoint-1/model.safetensors", _truncate, ("damaged model weights",)),
    Case("weights garbage", "checkpoint-1/model.safetensors", _garbage, ("damaged model weights",)),
    Case("optimizer truncated", "checkpoint-1/optimizer.pt", _truncate, ("damaged optimizer state",)),
    Case("optimizer missing", "checkpoint-1/optimizer.pt", lambda p: p.unlink(), ("optimizer.pt missing",)),
    Case("scheduler garbage", "checkpoint-1/scheduler.pt", _garbage, ("damaged LR scheduler state",)),
    Case("rng truncated", "checkpoint-1/rng_state.pth", _truncate, ("damaged RNG state",)),
    Case("fingerprint garbage", "checkpoint-1/data_fingerprint.json", _garbage, ("damaged",)),
    Case("lock file garbage", ".fgclip.lock", _garbage, ("cannot be read", "rm ")),
]  # fmt: skip


def _one_line(err: str, command: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"{command}: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("case", RESUME, ids=lambda c: c.name)
def test_resume_from_a_damaged_checkpoint_is_one_line(made, tmp_path, capsys, case, train_args):
    run = tmp_path / "run"
    shutil.copytree(made["run"], run)
    damaged = run / case.file
    case.damage(damaged)
    capsys.readouterr()
    code = main(train_args(made["synth"], run, *STEPS, "--resume", str(run / "checkpoint-1")))
    line = _one_line(capsys.readouterr().err, "fgclip train")
    assert code == 1
    assert str(damaged) in line or str(damaged.parent) in line, line
    for says in case.says:
        assert says in line, (says, line)
    if "lock" not in case.name:
        assert "--resume" in line or "checkpoint" in line


MODEL = [
    Case("weights truncated", "model/model.safetensors", _truncate, ("damaged weights file", "another checkpoint")),
    Case("weights garbage", "model/model.safetensors", _garbage, ("damaged weights file",)),
    Case("config.json garbage", "model/config.json", _garbage, ("damaged model config",)),
    Case("config.json a list", "model/config.json", _text("[1, 2]"), ("damaged model config", "not an object")),
]  # fmt: skip


@pytest.mark.parametrize("case", MODEL, ids=lambda c: c.name)
def test_infer_with_a_damaged_model_is_one_line(made, tmp_path, capsys, case):
    run = tmp_path / "run"
    shutil.copytree(made["run"], run)
    case.damage(run / case.file)
    video = sorted((made["synth"] / "videos").rglob("*.mp4"))[0]
    capsys.readouterr()
    code = main(
        [
            "infer",
            str(video),
            "--checkpoint",
            str(run / "model"),
            "--out",
            str(tmp_path / "i"),
            "--no-progress",
        ]
    )
    line = _one_line(capsys.readouterr().err, "fgclip infer")
    assert code == 1 and str(run / case.file) in line
    for says in case.says:
        assert says in line, (says, line)


HEAD = [
    Case("head.json garbage", "head.json", _garbage, ("damaged head config", "fgclip head train")),
    Case("head.json wrong type", "head.json", _text('{"head": [1, 2]}'), ("damaged head config",)),
    Case("head.json truncated", "head.json", _truncate, ("damaged head config",)),
    Case("head.safetensors truncated", "head.safetensors", _truncate, ("damaged head weights",)),
    Case("head.safetensors garbage", "head.safetensors", _garbage, ("damaged head weights",)),
]  # fmt: skip


@pytest.mark.parametrize("case", HEAD, ids=lambda c: c.name)
def test_head_eval_with_a_damaged_head_is_one_line(made, tmp_path, capsys, case):
    head = tmp_path / "head"
    shutil.copytree(made["head"], head)
    case.damage(head / case.file)
    paths = made["features"]
    capsys.readouterr()
    code = main(["head", "eval", str(head), str(paths.features), "--temporal-annotations", str(paths.annotations),
                 "--test-list", str(paths.test_list), "--out", str(tmp_path / "eval")])  # fmt: skip
    line = _one_line(capsys.readouterr().err, "fgclip head eval")
    assert code == 1 and str(head / case.file) in line
    for says in case.says:
        assert says in line, (says, line)


FEATURES = [
    Case("features.json garbage", "features.json", _garbage, ("damaged",)),
    Case("features.json a list", "features.json", _text("[1]"), ("not an object",)),
    Case("a video entry of the wrong type", "features.json", None, ("not an object",)),
    Case("num_frames not a count", "features.json", None, ("num_frames",)),
    Case("npy truncated", None, _truncate, ("unreadable",)),
]  # fmt: skip


@pytest.mark.parametrize("case", FEATURES, ids=lambda c: c.name)
def test_head_train_on_damaged_exported_features_is_one_line(made, tmp_path, capsys, case):
    paths = made["features"]
    root = tmp_path / "features"
    shutil.copytree(Path(paths.features), root)
    description = json.loads((root / "features.json").read_text())
    first = next(iter(description["videos"]))
    if case.name == "a video entry of the wrong type":
        description["videos"][first] = ["not", "an", "object"]
        (root / "features.json").write_text(json.dumps(description))
    elif case.name == "num_frames not a count":
        description["videos"][first]["num_frames"] = "many"
        (root / "features.json").write_text(json.dumps(description))
    elif case.file is None:
        case.damage(sorted(root.rglob("*.npy"))[0])
    else:
        case.damage(root / case.file)
    capsys.readouterr()
    code = main(["head", "train", str(root), "--labels", str(paths.train_list), "--out", str(tmp_path / "h"),
                 *HEAD_RECIPE])  # fmt: skip
    line = _one_line(capsys.readouterr().err, "fgclip head train")
    assert code == 1 and str(root) in line
    for says in case.says:
        assert says in line, (says, line)


def test_a_probe_index_entry_of_the_wrong_type_is_named_and_probed_again(made, tmp_path, capsys, monkeypatch):
    index = tmp_path / "video_probe.json"  # the default index under $FGCLIP_CACHE_DIR
    monkeypatch.setenv("FGCLIP_CACHE_DIR", str(tmp_path))
    manifest = made["synth"] / "train.json"
    assert main(["data", "check", str(manifest), "--video-root", str(made["synth"])]) == 0
    data = json.loads(index.read_text())
    keys = sorted(data["entries"])
    data["entries"][keys[0]] = ["a", "list"]
    data["entries"][keys[1]]["info"]["num_frames"] = "many"
    index.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["data", "check", str(manifest), "--video-root", str(made["synth"])]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    named = [line for line in err.splitlines() if line.startswith(f"probe index {index}: entry")]
    assert len(named) == 2 and "is a list, not an object" in named[0] + named[1], err
    assert "info.num_frames = 'many'" in named[0] + named[1]
    repaired = json.loads(index.read_text())["entries"]
    assert isinstance(repaired[keys[0]], dict) and isinstance(repaired[keys[1]]["info"]["num_frames"], int)
