"""What every command prints for bad input: `fgclip <command>: <what, which file / field / entry, what to do>`.

`fgclip.cli.main` catches the project's error classes (a refused config, manifest, video, checkpoint, feature
file, annotation file, output folder) and the operating-system errors of a user's files (not found, no
permission, read-only, disk full), prints them as that one line (details may follow on indented lines) and
exits 1 (2 for usage). Anything else is a bug in fgclip and keeps its traceback.

The error classes are looked up by module and name in `sys.modules`, so building the message imports
nothing: an error of a module that was never imported cannot have been raised.
"""

from __future__ import annotations

import errno
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# (module, class): bad input of one kind each; subclasses (FrameCacheMiss, SelectionOnTestRefused) included
USER_ERRORS = (
    ("fgclip.config", "ConfigError"),
    ("fgclip.data.errors", "ManifestError"),
    ("fgclip.data.video", "VideoError"),
    ("fgclip.data.epochs", "TooManyFailedClips"),
    ("fgclip.model.errors", "CheckpointError"),
    ("fgclip.head.features", "FeatureError"),
    ("fgclip.evaluation.anomaly", "AnnotationError"),
    ("fgclip.evaluation.export", "ExportError"),
    ("fgclip.evaluation.shards", "ShardError"),
    ("fgclip.training.nonfinite", "NonFiniteLossError"),
    ("fgclip.training.checkpoints", "SaveError"),
    ("fgclip.training.preemption", "Preempted"),
    ("fgclip.commands.data.show", "ShowError"),
    ("fgclip.commands._errors", "OutputError"),
    ("fgclip.commands._errors", "UsageError"),
)

# errno -> what to do; an OSError with one of these is about the user's files, not a bug
FILE_PROBLEMS = {
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "a folder where a file was expected",
    errno.ENAMETOOLONG: "a file name longer than the file system allows (255 bytes)",
    errno.ENOTEMPTY: "the folder is not empty",
    errno.EACCES: "permission denied: fix the permissions or write elsewhere",
    errno.EPERM: "operation not permitted: fix the permissions or write elsewhere",
    errno.EROFS: "read-only file system: write elsewhere",
    errno.ENOSPC: "no space left on device: free space there or write elsewhere",
    errno.EDQUOT: "disk quota exceeded: free space there or write elsewhere",
}

WRITE_PROBLEMS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


class UsageError(ValueError):
    """Options that do not go together (exit code 2, like argparse's own usage errors)."""


class OutputError(ValueError):
    """An output location that cannot be written (checked before the work that would fill it)."""


def user_error_message(error: BaseException) -> str | None:
    """The one-line message of a bad-input error; None for anything else (a bug: let it raise)."""
    if _is_project_error(error):
        return str(error)
    if isinstance(error, OSError) and (error.errno in FILE_PROBLEMS or _raised_with_message(error)):
        return os_error_message(error)
    return None


def exit_code(error: BaseException) -> int:
    if isinstance(getattr(error, "exit_code", None), int):  # Preempted: 128 + signal, as the shell reports it
        return error.exit_code
    usage = ("fgclip.commands._errors", "UsageError"), ("fgclip.commands.data.show", "ShowUsageError")
    return 2 if _is_instance(error, *usage) else 1


def os_error_message(error: OSError) -> str:
    """`PATH: no space left on device: free space there or write elsewhere` (path first, the fix last)."""
    if error.errno not in FILE_PROBLEMS:  # fgclip's own FileNotFoundError("... not found: PATH")
        return str(error)
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    what = FILE_PROBLEMS[error.errno]
    reason = (error.strerror or "").lower()
    if reason and not what.startswith(reason):
        what = f"{reason} ({what})"
    return f"{' -> '.join(paths)}: {what}" if paths else what


def check_writable(folder: str | Path, option: str) -> Path:
    """Create `folder` and write a probe file in it, before any work whose results go there.

    A read-only, full or misspelt `--out` is found in a second, not after the evaluation it was to hold."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".fgclip-write-test-"):
            pass
    except OSError as error:
        where = error.filename or folder
        problem = FILE_PROBLEMS.get(error.errno) or error.strerror or str(error)
        raise OutputError(f"{option} {folder}: cannot write there ({where}: {problem})") from error
    return folder


@contextmanager
def writing_to(folder: str | Path, option: str) -> Iterator[None]:
    """Name the output folder (and the option that chose it) when writing there fails: a full disk raises
    `OSError(ENOSPC)` from a buffered write with no file name at all."""
    try:
        yield
    except OSError as error:
        if error.errno not in WRITE_PROBLEMS:  # a missing input read on the way is not about the output
            raise
        where = f" ({error.filename})" if error.filename else ""
        raise OutputError(f"{option} {folder}{where}: {FILE_PROBLEMS[error.errno]}") from error


def _raised_with_message(error: OSError) -> bool:
    """fgclip's own `FileNotFoundError("annotation file not found: PATH")`: a message, no errno."""
    return isinstance(error, FileNotFoundError) and error.errno is None


def _is_project_error(error: BaseException) -> bool:
    return _is_instance(error, *USER_ERRORS)


def _is_instance(error: BaseException, *names: tuple[str, str]) -> bool:
    for module, name in names:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(error, cls):
            return True
    return False
