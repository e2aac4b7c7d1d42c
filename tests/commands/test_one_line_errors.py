"""Bad input gives one line, `fgclip <command>: <what, which file / field / entry, what to do>`, exit 1 (2 for
usage), never a traceback: one table row per case, each run through the real entry point (`fgclip.cli.main`).

Argument lists and expected texts are `string.Template`s over the paths of a tiny synthetic set, a tiny saved
checkpoint and the row's own tmp folder ($tmp), built once per module. A row's `setup` may stand in for what a
test cannot make for real (a full disk, a read-only file system for root) and may forbid the expensive step
that must not start before a check (the evaluation before the --out check).
"""

from __future__ import annotations

import errno
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import pytest
import torch

from fgclip import builders
from fgclip.checks import check_run_config
from fgclip.cli import main
from fgclip.commands.demo import demo_overrides
from fgclip.config import load_config
from fgclip.configs import demo_config_path
from fgclip.synthetic import generate
from fgclip.training.checkpoints import RUN_CONFIG_FILE

TINY = "{image_size: 32, patch_size: 8, vision_width: 32, vision_layers: 1, text_width: 32, text_layers: 1, heads: 2, projection_dim: 16}"


@dataclass(frozen=True)
class Env:
    config: Path  # a run config that trains (tiny model, 1 step) on the synthetic set
    data: Path  # the synthetic set (its video root)
    model: Path  # a saved tiny checkpoint with its run config
    video: Path  # a good video
    bad_video: Path  # garbage bytes named .mp4
    bad_root: Path  # a copy of the set whose first test video is garbage
    bad_root_video: Path
    a_file: Path  # a regular file: "$a_file/out" cannot be a folder

    def substitute(self, text: str, tmp: Path) -> str:
        names = {k: str(v) for k, v in vars(self).items()}
        return Template(text).substitute(names, tmp=str(tmp))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp("one_line_errors")
    data = generate(root / "data", seed=5, num_videos=8, test_fraction=0.5).out_dir
    overrides = demo_overrides(data, root / "run", seed=0) + [
        "--model.tiny", TINY, "--train.max_steps", "1", "--train.per_device_batch_size", "2",
        "--train.save_steps", "1", "--train.warmup_steps", "0", "--train.progress_bar", "false",
        "--train.overwrite_output_dir", "false", "--data.num_frames", "2", "--data.num_workers", "0",
        "--eval.frames_per_snippet", "2",
    ]  # fmt: skip
    config = load_config(demo_config_path(), overrides)
    config_path = root / "run.yaml"
    config.save(config_path)
    model_dir = root / "model"  # what `fgclip train` writes, without training: weights, tokenizer, run config
    tokenizer = builders.build_tokenizer(config.model)
    model, _ = builders.build_model(config.model, tokenizer)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    config.save(model_dir / RUN_CONFIG_FILE)
    bad_video = root / "bad.mp4"
    bad_video.write_bytes(b"not a video " * 64)
    bad_root = root / "bad_root"
    shutil.copytree(data, bad_root)
    bad_root_video = bad_root / json.loads((data / "test.json").read_text())[0]["video"]
    bad_root_video.write_bytes(b"not a video " * 64)
    a_file = root / "a_file"
    a_file.write_text("a file, not a folder\n")
    video = sorted((data / "videos").rglob("*.mp4"))[0]
    return Env(config_path, data, model_dir, video, bad_video, bad_root, bad_root_video, a_file)


# ---------------------------------------------------------------------------------------- row set-ups
def _forbid(target: str) -> Callable:
    """The step `target` (module.attribute) must not start: the check of the row comes before it."""
    module, name = target.rsplit(".", 1)

    def setup(monkeypatch, env, tmp):
        def refuse(*args, **kwargs):
            raise AssertionError(f"{target} ran before the check that should have stopped the command")

        monkeypatch.setattr(f"{module}.{name}", refuse)

    return setup


def _read_only(folder: str, *then: Callable) -> Callable:
    """Writing into `folder` fails as on a read-only file system (as root, chmod cannot make one)."""

    def setup(monkeypatch, env, tmp):
        target = Path(env.substitute(folder, tmp))
        real = tempfile.NamedTemporaryFile

        def probe(*args, **kwargs):
            if Path(kwargs.get("dir", "")) == target:
                raise OSError(errno.EROFS, "Read-only file system", str(target))
            return real(*args, **kwargs)

        monkeypatch.setattr(tempfile, "NamedTemporaryFile", probe)
        for other in then:
            other(monkeypatch, env, tmp)

    return setup


def _disk_full(target: str) -> Callable:
    """`target` (numpy.save, torch.save) fails as a write to a full disk does: ENOSPC, no file name."""

    def setup(monkeypatch, env, tmp):
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(target, full)

    return setup


def _stream_writer_fails(monkeypatch, env, tmp):
    """torch.save's C++ writer on a full disk: a RuntimeError without errno or path."""

    def fails(*args, **kwargs):
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(torch, "save", fails)


def _write(name: str, text: str) -> Callable:
    def setup(monkeypatch, env, tmp):
        (tmp / name).write_text(text)

    return setup


# ---------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Row:
    name: str
    argv: tuple[str, ...]  # Templates over Env and $tmp
    expected: tuple[str, ...]  # each in the one error line: the file, field or entry, and the problem
    code: int = 1
    setup: Callable | None = None
    marks: tuple = field(default=())

    @property
    def command(self) -> str:
        words = [a for a in self.argv if not a.startswith("-")]
        return "fgclip " + " ".join(words[:2] if words[0] in ("data", "head") else words[:1])


TRAIN = ("train", "$config", "--output_dir", "$tmp/run")
EVAL = ("eval", "$model", "--no-progress")
INFER = ("infer", "$video", "--checkpoint", "$model", "--no-progress")
EXPORT = ("export-features", "$model", "--no-progress")
ROWS = [
    # missing inputs: named by their config field, found before the model is built
    Row("missing manifest", (*TRAIN, "--data.train_manifests", '["$tmp/nope.json"]'),
        ("data.train_manifests", "$tmp/nope.json", "not found")),
    Row("missing hard-negative file", (*TRAIN, "--data.hard_negatives", '["$tmp/hn.json"]'),
        ("data.hard_negatives", "$tmp/hn.json", "not found")),
    Row("missing video root", (*TRAIN, "--data.video_root", "$tmp/videos"), ("data.video_root", "$tmp/videos")),
    Row("missing test list", (*TRAIN, "--data.test_list", "$tmp/test.txt"), ("data.test_list", "$tmp/test.txt")),
    Row("missing model.init", (*TRAIN, "--model.init", "$tmp/clip"), ("model.init", "$tmp/clip", "not found")),
    Row("missing config", ("train", "$tmp/run.yaml"), ("config file not found", "$tmp/run.yaml")),
    Row("no training clips", (*TRAIN, "--data.train_manifests", '["$tmp/empty.json"]'),
        ("data.train_manifests", "$tmp/empty.json", "no clips"), setup=_write("empty.json", "[]")),
    # the config file and its values, at load time (not at the first batch)
    Row("YAML syntax error", ("train", "$tmp/bad.yaml"), ("$tmp/bad.yaml:3:", "YAML syntax error"),
        setup=_write("bad.yaml", "model:\n  init: tiny\n    tokenizer: synthetic\n")),
    Row("section not a mapping", ("train", "$tmp/loss5.yaml"), ("$tmp/loss5.yaml", "section 'loss' must be a mapping"),
        setup=_write("loss5.yaml", "loss: 5\n")),
    Row("bogus lr_scheduler", (*TRAIN, "--train.lr_scheduler", "bogus"), ("train.lr_scheduler", "'bogus'", "cosine")),
    Row("negative num_workers", (*TRAIN, "--data.num_workers", "-1"), ("data.num_workers", ">= 0", "-1")),
    Row(
        "negative max_failed_clips",
        (*TRAIN, "--data.max_failed_clips", "-1"),
        ("data.max_failed_clips", ">= 0", "-1"),
    ),
    Row("negative image_size", (*TRAIN, "--data.image_size", "-3"), ("data.image_size", ">= 1", "-3")),
    Row("negative context_s", (*TRAIN, "--data.context_s", "-0.5"), ("data.context_s", ">= 0", "-0.5")),
    Row("NaN context_s", (*TRAIN, "--data.context_s", ".nan"), ("data.context_s", "nan")),
    Row("unknown key", (*TRAIN, "--train.max_stepz", "3"), ("max_stepz", "max_steps")),
    Row("value of the wrong type", (*TRAIN, "--train.max_steps", "many"), ("train.max_steps", "'many'", "int")),
    # model options
    Row("model.tiny value not a number", (*TRAIN, "--model.tiny", "{vision_width: abc}"),
        ("model.tiny.vision_width", "'abc'", "positive integer")),
    Row("model.tiny string for an int", (*TRAIN, "--model.tiny", "{vision_layers: '2'}"),
        ("model.tiny.vision_layers", "'2'")),
    Row("model.tiny unknown key", (*TRAIN, "--model.tiny", "{hidden_size: 64}"), ("model.tiny", "hidden_size")),
    Row("model.tiny width vs heads", (*TRAIN, "--model.tiny", "{vision_width: 30, heads: 4}"),
        ("vision_width (30)", "heads (4)")),
    Row("model option of the wrong type", (*TRAIN, "--model.temporal_num_layers", "abc"),
        ("model.temporal_num_layers", "'abc'", "int")),
    Row("model option out of range", (*TRAIN, "--model.region_pooling", "median"), ("region_pooling", "'median'")),
    Row("doctor: bad config value", ("doctor", "$config", "--train.lr_scheduler", "bogus"), ("train.lr_scheduler",)),
    # data tools
    Row("data check: missing manifest", ("data", "check", "$tmp/nope.json"), ("$tmp/nope.json", "not found")),
    Row("data check: bad config value", ("data", "check", "$config", "--data.context_s", "-1"), ("data.context_s",)),
    Row("data check: remap without =", ("data", "check", "$data/train.json", "--path-remap", "x"),
        ("--path-remap", "OLD=NEW"), code=2),
    Row("data cache: unopenable video",
        ("data", "cache", "$bad_root/test.json", "--video-root", "$bad_root", "--out", "$tmp/cache", "--size", "32"),
        ("$bad_root_video", "cannot be opened")),
    # checkpoints and videos
    Row("eval: missing checkpoint", ("eval", "$tmp/run/model"), ("$tmp/run/model", "not found")),
    Row("inspect: missing checkpoint", ("inspect", "$tmp/clip"), ("$tmp/clip", "not found")),
    Row("eval: unopenable video", (*EVAL, "--video-root", "$bad_root", "--out", "$tmp/eval"),
        ("$bad_root_video", "cannot be opened")),
    Row("infer: unopenable video", ("infer", "$bad_video", "--checkpoint", "$model", "--out", "$tmp/i"),
        ("$bad_video", "cannot be opened")),
    Row("infer: missing video", ("infer", "$tmp/v.mp4", "--checkpoint", "$model", "--out", "$tmp/i"),
        ("$tmp/v.mp4", "not found")),
    Row("export-features: unopenable video", (*EXPORT, "--videos", "$bad_video", "--out", "$tmp/f"),
        ("$bad_video", "cannot be opened")),
    Row("export-features: missing video list", (*EXPORT, "--video-list", "$tmp/l.txt", "--out", "$tmp/f"),
        ("--video-list", "$tmp/l.txt", "not found")),
    Row("export-features: --shard out of range", (*EXPORT, "--videos", "$video", "--out", "$tmp/f", "--shard", "2/2"),
        ("--shard", "2/2", "0 <= I < N"), code=2),
    Row("merge: nothing to merge", ("merge", "$tmp"), ("$tmp", "no features.shard-I-of-N.json")),
    Row("head train: a list CSV's foreign paths", ("head", "train", "$tmp/l.csv", "--crop", "0", "--out", "$tmp/h"),
        ("$tmp/l.csv:2", "/nowhere/Abuse/Abuse001_x264__0.npy", "--feature-root"),
        setup=_write("l.csv", "path,label\n/nowhere/Abuse/Abuse001_x264__0.npy,Abuse\n")),
    Row("infer: --write-frame-cache alone", (*INFER, "--out", "$tmp/i", "--write-frame-cache"),
        ("--write-frame-cache", "--frame-cache"), code=2),
    # outputs: checked before the work that fills them
    Row("eval: --out under a file", (*EVAL, "--out", "$a_file/eval"), ("--out", "$a_file/eval", "not a folder"),
        setup=_forbid("fgclip.builders.evaluate")),
    Row("eval: read-only --out", (*EVAL, "--out", "$tmp/ro"), ("--out", "$tmp/ro", "read-only file system"),
        setup=_read_only("$tmp/ro", _forbid("fgclip.builders.evaluate"))),
    Row("infer: read-only --out", (*INFER, "--out", "$tmp/ro"), ("--out", "$tmp/ro", "read-only"),
        setup=_read_only("$tmp/ro", _forbid("fgclip.evaluation.inference.infer_video"))),
    Row("export-features: --out under a file", (*EXPORT, "--videos", "$video", "--out", "$a_file/f"),
        ("--out", "$a_file/f"), setup=_forbid("fgclip.evaluation.export.export_features")),
    Row("export-features: full disk", (*EXPORT, "--videos", "$video", "--out", "$tmp/f"),
        ("--out", "$tmp/f", "no space left on device"), setup=_disk_full("numpy.save")),
    Row("head train: read-only --out",
        ("head", "train", "$tmp/features.json", "--labels", "$tmp/labels.txt", "--out", "$tmp/ro"),
        ("--out", "$tmp/ro", "read-only"), setup=_read_only("$tmp/ro", _forbid("fgclip.head.features.read_features"))),
    Row("head compare: two seeds", ("head", "compare", "$tmp/a.json", "$tmp/b.json", "--labels", "$tmp/l.txt",
                                    "--test-list", "$tmp/t.txt", "--temporal-annotations", "$tmp/t.txt",
                                    "--seeds", "0", "1"), ("--seeds", "3"), code=2),
    Row("train: output_dir under a file", ("train", "$config", "--output_dir", "$a_file/run"),
        ("$a_file", "not a folder")),
    Row("train: output_dir is a file", ("train", "$config", "--output_dir", "$a_file"),
        ("train.output_dir", "$a_file", "is a file, not a folder")),
    # leftovers of the previous round: refused at config load or by the manifest reader, not at step 1
    Row("negative temporal_num_layers", (*TRAIN, "--model.temporal_num_layers", "-1"),
        ("model.temporal_num_layers", ">= 0", "-1")),
    Row("zero temporal_num_heads", (*TRAIN, "--model.temporal_num_heads", "0"), ("model.temporal_num_heads", ">= 1")),
    Row("bad YAML in an override", (*TRAIN, "--train.lora", "{rank: ["), ("--train.lora", "'{rank: ['", "YAML syntax error")),
    Row("legacy bank key beside the bank section", (*TRAIN, "--model.memory_bank_size", "8"),
        ("model.memory_bank_size (8)", "bank.size (0)", "both given", "--bank.size")),
    Row("video path with a NUL byte", (*TRAIN, "--data.train_manifests", '["$tmp/nul.json"]'),
        ("$tmp/nul.json", "entry 0", "field 'video'", "NUL byte"),
        setup=_write("nul.json", json.dumps([{"video": "a\u0000b.mp4", "global_caption": "a car", "region_captions": [],
                                               "box_infos": [], "timestamps": [0, 1]}]))),
    Row("video name over 255 bytes", (*TRAIN, "--data.train_manifests", '["$tmp/long.json"]'),
        ("$tmp/long.json", "entry 0", "field 'video'", "longer than 255 bytes"),
        setup=_write("long.json", json.dumps([{"video": "v" * 300 + ".mp4", "global_caption": "a car",
                                                "region_captions": [], "box_infos": [], "timestamps": [0, 1]}]))),
    Row("infer: video name over 255 bytes", ("infer", "$tmp/" + "v" * 300 + ".mp4", "--checkpoint", "$model", "--out", "$tmp/i"),
        ("v" * 40, "File name too long")),
    # a full disk while training saves (slow: these train one step)
    Row("train: full disk at a checkpoint", TRAIN, ("$tmp/run", "checkpoint-1", "no space left on device"),
        setup=_disk_full("torch.save"), marks=(pytest.mark.slow,)),
    Row("train: torch's writer fails", TRAIN, ("$tmp/run", "checkpoint-1", "iostream error", "MiB free"),
        setup=_stream_writer_fails, marks=(pytest.mark.slow,)),
]  # fmt: skip


@pytest.mark.parametrize("row", [pytest.param(r, id=r.name, marks=r.marks) for r in ROWS])
def test_bad_input_gives_one_line(row, env, tmp_path, monkeypatch, capsys):
    if row.setup is not None:
        row.setup(monkeypatch, env, tmp_path)
    argv = [env.substitute(a, tmp_path) for a in row.argv]
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"{row.command}: ")]
    assert len(lines) == 1, err
    message = _with_details(err, lines[0])
    for expected in row.expected:
        assert env.substitute(expected, tmp_path) in message, (expected, message)
    assert "Traceback" not in err
    assert code == row.code, err


def _with_details(err: str, line: str) -> str:
    """The error line and the indented detail lines under it (a manifest's problems, one per line)."""
    after = err.splitlines()[err.splitlines().index(line) + 1 :]
    details = [
        d for d in after[: next((i for i, d in enumerate(after) if not d.startswith(" ")), len(after))]
    ]
    return "\n".join([line, *details])


@pytest.mark.parametrize("command", [INFER, EVAL, EXPORT], ids=lambda c: c[0])
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_batch_frames_must_be_a_positive_integer(env, tmp_path, capsys, command, value):
    argv = [env.substitute(a, tmp_path) for a in (*command, "--out", "$tmp/o", "--batch-frames", value)]
    with pytest.raises(SystemExit) as exit:
        main(argv)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "Traceback" not in err
    assert "argument --batch-frames:" in err.splitlines()[-1] and value in err.splitlines()[-1]


def test_the_table_covers_every_command_that_reads_input():
    covered = {row.command for row in ROWS}
    assert {"fgclip train", "fgclip doctor", "fgclip eval", "fgclip infer", "fgclip export-features",
            "fgclip inspect", "fgclip data check", "fgclip data cache", "fgclip head train"} <= covered  # fmt: skip


def test_a_bug_keeps_its_traceback(env, monkeypatch):
    """Only bad input is turned into one line: an error of fgclip's own code still raises."""

    def bug(*args, **kwargs):
        raise ValueError("a bug in fgclip, not bad input")

    monkeypatch.setattr("fgclip.commands.inspect.run_inspect", bug)
    with pytest.raises(ValueError, match="a bug in fgclip"):
        main(["inspect", str(env.model)])


def test_an_os_error_that_is_not_about_files_keeps_its_traceback(env, monkeypatch):
    def broken_pipe(*args, **kwargs):
        raise OSError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr("fgclip.commands.inspect.run_inspect", broken_pipe)
    with pytest.raises(OSError, match="Broken pipe"):
        main(["inspect", str(env.model)])


def test_the_base_of_the_table_is_good(env):
    """The rows fail for their own reason only: the base config passes the start-up checks and `data check`."""
    check_run_config(load_config(env.config))
    assert main(["data", "check", str(env.config)]) == 0


@pytest.mark.slow
def test_the_base_of_the_table_trains(env, tmp_path):
    assert main(["train", str(env.config), "--output_dir", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "checkpoint-1").is_dir() and (
        tmp_path / "run" / "model" / "model.safetensors"
    ).is_file()
