"""Checkpoint folders: found and rotated by step number, written through a staging folder, checked on resume.

A checkpoint is first written to `OUTPUT_DIR/.staging/checkpoint-N` and renamed to `OUTPUT_DIR/checkpoint-N`
once every rank has finished writing: a process killed mid-save leaves the previous checkpoints untouched
and only a partial folder under `.staging`, which no `checkpoint-*` glob (ours or HF's) can pick up.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from fgclip.config import (
    MODEL_OPTIONS,
    ConfigError,
    DataSection,
    ExperimentConfig,
    TrainSection,
    move_legacy_bank_keys,
)
from fgclip.losses.memory_bank import MemoryBankOptions
from fgclip.model.configuration import FGCLIPConfig
from fgclip.model.errors import reading_back

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STAGING_DIR = ".staging"
TRAINER_STATE_FILE = "trainer_state.json"  # HF writes it last: a folder without it is not a checkpoint
RUN_CONFIG_FILE = "fgclip_config.yaml"
# What `fgclip train` writes into an output dir besides the checkpoints (removed by overwrite_output_dir).
RUN_ARTIFACTS = (
    "metrics.jsonl",
    "loss_curves.png",
    "tensorboard",
    "model",
    "nonfinite_batches.jsonl",
    "data_fingerprint.json",
    "resume_changes.jsonl",
    STAGING_DIR,
)
# Config parts a resumed run must share with its checkpoint: they define what the checkpoint's weights,
# optimizer state and memory-bank contents mean (refused even with --resume-changed).
RESUME_INVARIANT = ("model", "loss", "bank", "train.lora")
# Settings a resumed run may change without becoming another run: they alter neither the sample order, nor the
# optimizer trajectory, nor what a step is (where files are, logging, saving, workers, guards). Every other
# `train.*` / `data.*` setting is compared, so a setting added later is compared until listed here. The
# manifests are compared by content (DATA_FINGERPRINT_FILE), so a data folder moved between nodes still resumes.
RESUME_FREE = {
    "train": ("output_dir", "resume", "resume_changed", "overwrite_output_dir", "progress_bar", "logging_steps",
              "save_steps", "save_total_limit", "signal_grace_s", "max_consecutive_nonfinite",
              "gradient_checkpointing", "lora", "report_to"),
    "data": ("num_workers", "video_root", "path_remaps", "video_probe_index", "frame_cache", "test_list",
             "test_leakage", "max_failed_clips", "eval_manifests", "train_manifests", "hard_negatives"),
}  # fmt: skip
OPTIMIZER_FILE, SCHEDULER_FILE = "optimizer.pt", "scheduler.pt"
RESUME_WAY_OUT = "resume from an earlier checkpoint (--resume OUTPUT_DIR/checkpoint-N), or copy this one again if it was copied"
SECTION_DEFAULTS = {"train": TrainSection, "data": DataSection}
DATA_FINGERPRINT_FILE = "data_fingerprint.json"
RESUME_CHANGES_FILE = "resume_changes.jsonl"


# errno of a failed save that is about the disk, not the code
DISK_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EIO: "I/O error"}  # fmt: skip
# torch.save's C++ writer reports a failed write (a full disk among them) as a RuntimeError without errno
TORCH_WRITE_FAILURES = (
    "PytorchStreamWriter failed",
    "file write failed",
    "iostream error",
    "inline_container.cc",
)


class SaveError(RuntimeError):
    """A checkpoint or model that could not be written; the message names the folder and the free space."""


@contextmanager
def saving(folder: Path, what: str) -> Iterator[None]:
    """Turn a failed write of `folder` (full disk, no permission; HF and torch name neither) into a `SaveError`
    naming it. The partial folder is left in `.staging`, where the next start removes it."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_ERRNOS:
            raise
        raise SaveError(_save_failure(folder, what, DISK_ERRNOS[error.errno], error.filename)) from error
    except RuntimeError as error:
        if not any(marker in str(error) for marker in TORCH_WRITE_FAILURES):
            raise
        raise SaveError(_save_failure(folder, what, f"write failed: {str(error).splitlines()[0]}")) from error


def _save_failure(folder: Path, what: str, reason: str, filename: str | None = None) -> str:
    free = _free_bytes(folder)
    file = f" ({filename})" if filename and str(filename) != str(folder) else ""
    return (
        f"{folder}{file}: {reason} while writing {what}; {free / 2**20:.1f} MiB free on that disk. Free space "
        "(or point train.output_dir at another disk) and continue with --resume latest"
    )


def _free_bytes(path: Path) -> int:
    existing = next(p for p in (path, *path.parents) if p.exists())
    return shutil.disk_usage(existing).free


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_PATTERN.match(path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete `checkpoint-N` folders, oldest first by step number (never by text or modification time)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def incomplete_checkpoints(output_dir: str | Path) -> list[Path]:
    return [p for p in list_checkpoints(output_dir) if not (p / TRAINER_STATE_FILE).is_file()]


def latest_checkpoint(output_dir: str | Path) -> Path:
    """The numerically latest complete checkpoint ("checkpoint-1000" after "checkpoint-200")."""
    complete = [p for p in list_checkpoints(output_dir) if (p / TRAINER_STATE_FILE).is_file()]
    if not complete:
        broken = incomplete_checkpoints(output_dir)
        detail = f" (incomplete, without {TRAINER_STATE_FILE}: {[p.name for p in broken]})" if broken else ""
        raise ConfigError(
            f"train.resume=latest but {output_dir} holds no complete checkpoint-N folder{detail}"
        )
    return complete[-1]


def rotate_checkpoints(output_dir: str | Path, keep: int | None) -> list[Path]:
    """Delete the oldest checkpoints (by step) beyond `keep`; the latest always stays. Returns what was removed."""
    if keep is None or keep <= 0:
        return []
    checkpoints = list_checkpoints(output_dir)
    removed = checkpoints[: max(len(checkpoints) - max(keep, 1), 0)]
    for path in removed:
        shutil.rmtree(path)
    return removed


def staging_path(final: Path) -> Path:
    return final.parent / STAGING_DIR / final.name


def promote(staged: Path, final: Path) -> None:
    """Move a fully written folder to its final name. A folder already there (an earlier run's save at the
    same step, after resuming from an older checkpoint) is moved aside first and deleted afterwards."""
    replaced = None
    if final.exists():
        replaced = staged.parent / f"replaced-{final.name}"
        if replaced.exists():
            shutil.rmtree(replaced)
        os.replace(final, replaced)
    os.replace(staged, final)
    _fsync_dir(final.parent)
    if replaced is not None:
        shutil.rmtree(replaced)
    if not any(staged.parent.iterdir()):
        staged.parent.rmdir()


def remove_stale_staging(output_dir: str | Path) -> list[str]:
    """Partial saves of a killed process: removed before training starts. Returns their names."""
    staging = Path(output_dir) / STAGING_DIR
    if not staging.is_dir():
        return []
    names = sorted(p.name for p in staging.iterdir())
    shutil.rmtree(staging)
    return names


def _fsync_dir(path: Path) -> None:
    """Make the rename durable (a crash of the machine, not only of the process, keeps it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------- output dir policy
def existing_run_artifacts(output_dir: str | Path) -> list[str]:
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    names = [p.name for p in list_checkpoints(output_dir)]
    resumed_configs = sorted(p.name for p in output_dir.glob("fgclip_config.resume-*.yaml"))
    return names + [name for name in RUN_ARTIFACTS if (output_dir / name).exists()] + resumed_configs


def check_output_dir(output_dir: str | Path, resume: str | None, overwrite: bool) -> None:
    """A new run refuses an output dir that holds an earlier run, unless told to resume it or overwrite it."""
    found = existing_run_artifacts(output_dir)
    if found and resume is None and not overwrite:
        shown = ", ".join(found[:8]) + (", ..." if len(found) > 8 else "")
        raise ConfigError(
            f"{output_dir} already holds a run ({shown}). Continue it with --resume latest, replace it with "
            "--overwrite_output_dir, or choose another --output_dir."
        )


def clear_output_dir(output_dir: str | Path) -> list[str]:
    """overwrite_output_dir: delete what an earlier `fgclip train` wrote there (and nothing else)."""
    removed = existing_run_artifacts(output_dir)
    for name in removed:
        path = Path(output_dir) / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return removed


# ------------------------------------------------------------------------------------------ resume check
def check_resume_config(checkpoint: str | Path, config: ExperimentConfig) -> list[str]:
    """Refuse to resume a checkpoint whose model, loss or memory-bank settings differ from the new config (never
    resumable), or whose sample order / optimizer trajectory / step settings or training data differ (unless
    `train.resume_changed`). Returns the accepted changes, one line each."""
    saved_file = Path(checkpoint) / RUN_CONFIG_FILE
    if not saved_file.is_file():
        raise ConfigError(
            f"cannot resume {checkpoint}: it has no {RUN_CONFIG_FILE}, so its model, loss and memory-bank settings "
            "cannot be compared with this run's"
        )
    saved = read_run_config(saved_file)
    move_legacy_bank_keys(saved, str(saved_file))
    current = config.to_dict()
    saved["model"] = model_options_with_defaults(saved.get("model") or {})
    current["model"] = model_options_with_defaults(current["model"])
    saved["bank"] = {**dataclasses.asdict(MemoryBankOptions()), **(saved.get("bank") or {})}
    differences = _differences(
        {key: _part(saved, key) for key in RESUME_INVARIANT},
        {key: _part(current, key) for key in RESUME_INVARIANT},
        prefix="",
    )
    if differences:
        raise ConfigError(
            f"cannot resume {checkpoint}: settings differ from the checkpoint's ({RUN_CONFIG_FILE}):\n  "
            + "\n  ".join(differences)
            + "\nResume with the checkpoint's settings, or start a new run (another --output_dir, or "
            "--overwrite_output_dir)."
        )
    changes = _run_differences(saved, current) + _data_differences(Path(checkpoint), saved, config)
    if changes and not config.train.resume_changed:
        raise ConfigError(
            f"cannot resume {checkpoint}: this would be another run; the sample order, optimizer trajectory or "
            f"step size differ from the checkpoint's ({RUN_CONFIG_FILE}, {DATA_FINGERPRINT_FILE}):\n  "
            + "\n  ".join(changes)
            + "\nResume with the checkpoint's settings, or accept the changes with --resume-changed (each is "
            f"logged and recorded in {RESUME_CHANGES_FILE}), or start a new run."
        )
    return changes


def check_checkpoint_files(checkpoint: Path, lora: bool) -> None:
    """Before anything is built: every file a resume reads is there and `trainer_state.json` is sound. HF skips
    a missing optimizer.pt or rng_state.pth with an info line and trains on with fresh moments: refused here."""
    weights = "lora_training_state.safetensors" if lora else "model.safetensors"
    missing = [n for n in (weights, OPTIMIZER_FILE, SCHEDULER_FILE) if not (checkpoint / n).is_file()]
    if missing:
        raise ConfigError(f"cannot resume {checkpoint}: {', '.join(missing)} missing; {RESUME_WAY_OUT}")
    state_file = checkpoint / TRAINER_STATE_FILE
    with reading_back(state_file, "trainer state", RESUME_WAY_OUT):
        state = json.loads(state_file.read_bytes())
        step = state["global_step"]
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise TypeError(f"global_step is {step!r}, not a step number")
        if not isinstance(state.get("log_history", []), list):
            raise TypeError("log_history is not a list")


def read_run_config(path: Path) -> dict:
    """A saved run config as a dict; a damaged one is one line naming it."""
    try:
        saved = yaml.safe_load(path.read_bytes())
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(
            f"{path}: damaged run config ({problem}); restore it from the run folder's {RUN_CONFIG_FILE} "
            "(the same file) or resume from another checkpoint"
        ) from None
    if saved is None:
        saved = {}
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: damaged run config (a {type(saved).__name__}, not a mapping of sections)")
    return saved


def _run_differences(saved: dict, current: dict) -> list[str]:
    """Differences in the compared `train` / `data` settings (everything but RESUME_FREE)."""
    lines = []
    for section, free in RESUME_FREE.items():
        defaults = dataclasses.asdict(SECTION_DEFAULTS[section]())  # what an older fgclip's config left out
        before = {k: v for k, v in {**defaults, **(saved.get(section) or {})}.items() if k not in free}
        now = {k: v for k, v in current[section].items() if k not in free}
        lines.extend(_differences(before, now, section))
    return lines


def data_fingerprint(data) -> dict:
    """The training data by content: sha256 and size of every manifest and hard-negative file, in order."""

    def files(paths: list[str]) -> list[dict]:
        return [{"file": str(p), "sha256": _sha256(Path(p)), "bytes": Path(p).stat().st_size} for p in paths]

    return {"train_manifests": files(data.train_manifests), "hard_negatives": files(data.hard_negatives)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_differences(checkpoint: Path, saved: dict, config: ExperimentConfig) -> list[str]:
    """The manifests' content against the checkpoint's fingerprint; without one (older checkpoints), their paths."""
    fingerprint_file = checkpoint / DATA_FINGERPRINT_FILE
    saved_data = saved.get("data") or {}
    if not fingerprint_file.is_file():
        return _differences(
            {k: saved_data.get(k, []) for k in ("train_manifests", "hard_negatives")},
            {k: getattr(config.data, k) for k in ("train_manifests", "hard_negatives")},
            "data",
        )
    try:
        before = json.loads(fingerprint_file.read_bytes())
        now = data_fingerprint(config.data)
        lines = []
        for key in ("train_manifests", "hard_negatives"):
            old, new = [f["sha256"] for f in before[key]], [f["sha256"] for f in now[key]]
            if old != new:
                lines.append(f"data.{key} content: checkpoint {_files(before[key])}, now {_files(now[key])}")
        return lines
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"{fingerprint_file}: damaged ({error}); resume from another checkpoint, or delete this file to "
            "compare the manifests by path only"
        ) from None


def _files(entries: list[dict]) -> str:
    return "[" + ", ".join(f"{Path(e['file']).name} sha256 {e['sha256'][:12]}" for e in entries) + "]"


def record_resume_changes(output_dir: Path, checkpoint: Path, changes: list[str]) -> None:
    """`--resume-changed`: every accepted change logged and appended to OUTPUT_DIR/resume_changes.jsonl."""
    for change in changes:
        print(f"[resume] accepted changed setting (--resume-changed): {change}", flush=True)
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "checkpoint": str(checkpoint),
           "changes": changes}  # fmt: skip
    with open(output_dir / RESUME_CHANGES_FILE, "a") as f:
        f.write(json.dumps(row) + "\n")


def model_options_with_defaults(options: dict) -> dict:
    """`options` (or a whole model section) with every model option it leaves out at FGCLIPConfig's default:
    an option left out and the same option set to its default are the same model."""
    defaults = {f.name: f.default for f in dataclasses.fields(FGCLIPConfig) if f.name in MODEL_OPTIONS}
    return {**defaults, **options}


def _part(config: dict, dotted: str):
    for key in dotted.split("."):
        config = (config or {}).get(key)
    return config


def _differences(saved: dict, current: dict, prefix: str) -> list[str]:
    lines = []
    for key in sorted(set(saved) | set(current)):
        before, now = saved.get(key, "<absent>"), current.get(key, "<absent>")
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(before, dict) and isinstance(now, dict):
            lines.extend(_differences(before, now, name))
        elif before != now:
            lines.append(f"{name}: checkpoint {before!r}, now {now!r}")
    return lines
