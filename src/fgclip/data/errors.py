"""Errors for bad input: every one names the file, the entry, the video and the field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EntryProblem:
    file: str
    index: int | None
    video: str | None
    field: str | None
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = [self.file]
        if self.index is not None:
            where.append(f"entry {self.index}")
        if self.video:
            where.append(f"video {self.video!r}")
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}"


class ManifestError(ValueError):
    """One or more problems in an annotation file; all of them are listed, not just the first."""

    def __init__(self, problems: list[EntryProblem]):
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} problem(s):\n  {shown}{more}")
