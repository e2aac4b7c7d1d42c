"""Errors for bad input: every one names the file, the entry, the video and the field."""

from __future__ import annotations

from dataclasses import dataclass

ERROR, WARNING = "error", "warning"


@dataclass
class EntryProblem:
    """One problem in an annotation file.

    `severity` "error": the entry cannot be read as written (the file is refused, or the entry skipped when the
    user asks for that). "warning": the entry was read under a documented interpretation (a placeholder span
    read as the whole video, an empty track removed, ...) that the user should know about.
    `origin` names the entry in the source file when it was converted from another format (a Label Studio
    task id, a legacy clip id), since the entry index then counts converted entries.
    """

    file: str
    index: int | None
    video: str | None
    field: str | None
    message: str
    severity: str = ERROR
    origin: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def to_dict(self) -> dict:
        """The machine-readable form (`data check --json`); `origin` is null unless converted."""
        return {
            "manifest": self.file,
            "entry": self.index,
            "video": self.video,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
            "origin": self.origin,
        }

    def __str__(self) -> str:
        where = [self.file]
        if self.index is not None:
            where.append(f"entry {self.index}" + (f" ({self.origin})" if self.origin else ""))
        elif self.origin:
            where.append(self.origin)
        if self.video:
            where.append(f"video {self.video!r}")
        if self.field:
            where.append(f"field {self.field!r}")
        kind = "" if self.is_error else "warning: "
        return f"{', '.join(where)}: {kind}{self.message}"


class ManifestError(ValueError):
    """One or more problems in an annotation file; all of them are listed, not just the first."""

    def __init__(self, problems: list[EntryProblem], hint: str = ""):
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} problem(s):\n  {shown}{more}" + (f"\n{hint}" if hint else ""))
