"""Errors of checkpoint loading (a module of its own so every loader can raise them without import cycles)."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded exactly: missing weights, wrong shapes, unknown layout."""
