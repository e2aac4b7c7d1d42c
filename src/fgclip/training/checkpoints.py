"""Checkpoint folders: found and rotated by step number, written through a staging folder, checked on resume.

A checkpoint is first written to `OUTPUT_DIR/.staging/checkpoint-N` and renamed to `OUTPUT_DIR/checkpoint-N`
once every rank has finished writing: a process killed mid-save leaves the previous checkpoints untouched
and only a partial folder under `.staging`, which no `checkpoint-*` glob (ours or HF's) can pick up.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from fgclip.config import MODEL_OPTIONS, ConfigError, ExperimentConfig, move_legacy_bank_keys
from fgclip.losses.memory_bank import MemoryBankOptions
from fgclip.model.configuration import FGCLIPConfig

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
    STAGING_DIR,
)
# Config parts a resumed run must share with its checkpoint: they define what the checkpoint's weights,
# optimizer state and memory-bank contents mean. (Other train.* may change: more steps, another rate.)
RESUME_INVARIANT = ("model", "loss", "bank", "train.lora")


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
    return names + [name for name in RUN_ARTIFACTS if (output_dir / name).exists()]


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
def check_resume_config(checkpoint: str | Path, config: ExperimentConfig) -> None:
    """Refuse to resume a checkpoint whose model, loss or memory-bank settings differ from the new config."""
    saved_file = Path(checkpoint) / RUN_CONFIG_FILE
    if not saved_file.is_file():
        raise ConfigError(
            f"cannot resume {checkpoint}: it has no {RUN_CONFIG_FILE}, so its model, loss and memory-bank settings "
            "cannot be compared with this run's"
        )
    saved = yaml.safe_load(saved_file.read_text()) or {}
    move_legacy_bank_keys(saved)
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
