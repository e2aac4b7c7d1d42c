"""What converting another annotation format into clip-list entries (format 1) produces."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fgclip.data.errors import EntryProblem


@dataclass
class Conversion:
    """Format-1 entries, where each came from in the source file, and every problem met converting it."""

    source: str
    format: str
    entries: list[dict] = field(default_factory=list)
    origins: list[str] = field(
        default_factory=list
    )  # names each entry in the source ("task 5803", a clip id)
    problems: list[EntryProblem] = field(default_factory=list)
    annotation_fps: float | None = None  # the grid the entries' frames live on; None: the reader's default
    num_source_entries: int = 0
    off_grid: set[int] = field(
        default_factory=set
    )  # Label Studio tasks with a keyframe off the export's grid

    @property
    def errors(self) -> list[EntryProblem]:
        return [p for p in self.problems if p.is_error]

    def add(self, entry: dict, origin: str) -> None:
        self.entries.append(entry)
        self.origins.append(origin)

    def document(self) -> list | dict:
        """The clip-list JSON: a plain list on the default 25-fps grid, else `{"annotation_fps", "clips"}`."""
        if self.annotation_fps is None or abs(self.annotation_fps - 25.0) < 1e-9:
            return self.entries
        return {"annotation_fps": self.annotation_fps, "clips": self.entries}

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.document(), ensure_ascii=False, indent=1), encoding="utf-8")
        return path
