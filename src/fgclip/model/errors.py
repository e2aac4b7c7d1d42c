"""Errors of checkpoint loading (a module of its own so every loader can raise them without import cycles)."""

from __future__ import annotations

import errno
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded exactly: missing weights, wrong shapes, unknown layout."""


# What deserialising a damaged file raises: truncated or garbage safetensors (SafetensorError, an Exception),
# torch.load's zip reader (RuntimeError), unpickling (UnpicklingError, EOFError), JSON (ValueError, also for
# bytes that are not UTF-8), deep nesting (RecursionError), a value of the wrong type or shape (TypeError,
# KeyError, AttributeError, IndexError). Only the reading of one file is wrapped, never the code around it.
DAMAGE = (ValueError, RuntimeError, EOFError, RecursionError, TypeError, KeyError, AttributeError, IndexError)


@contextmanager
def reading_back(path: str | Path, what: str, way_out: str) -> Iterator[None]:
    """Reading a file fgclip wrote: any sign of damage becomes one CheckpointError naming the file, what it is,
    what is wrong and the way out (`FileNotFoundError` passes: a missing file has its own message)."""
    try:
        yield
    except OSError as error:
        if (
            error.errno != errno.EINVAL
        ):  # torch.load of a cut zip archive; others (not found, denied) are not damage
            raise
        raise _damaged(path, what, way_out, error) from None
    except (*DAMAGE, _safetensor_error(), pickle.UnpicklingError) as error:
        raise _damaged(path, what, way_out, error) from None


def _damaged(path: str | Path, what: str, way_out: str, error: BaseException) -> CheckpointError:
    detail = " ".join(str(error).split())[:160] or type(error).__name__
    return CheckpointError(f"{path}: damaged {what} ({type(error).__name__}: {detail}); {way_out}")


def _safetensor_error() -> type[BaseException]:
    from safetensors import SafetensorError

    return SafetensorError
