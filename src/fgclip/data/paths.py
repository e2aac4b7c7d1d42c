"""Video paths: a manifest's `video` string -> a local file, via a root and optional prefix remaps.

Nothing about a dataset's folder layout is hard-coded: `UCF_Crimes_Videos/UCF_Crimes/Videos/...` in a
manifest is mapped to wherever the videos are on this machine by `path_remaps`.
"""

from __future__ import annotations

from pathlib import Path


class VideoResolver:
    def __init__(self, video_root: str | Path = ".", path_remaps: dict[str, str] | None = None):
        self.root = Path(video_root)
        # Longest prefix first, so a specific remap wins over a general one.
        self.remaps = sorted((path_remaps or {}).items(), key=lambda kv: len(kv[0]), reverse=True)

    def __call__(self, video: str) -> Path:
        for prefix, target in self.remaps:
            if video.startswith(prefix):
                video = target + video[len(prefix) :]
                break
        path = Path(video)
        return path if path.is_absolute() else self.root / path
