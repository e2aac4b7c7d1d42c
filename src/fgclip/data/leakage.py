"""Test-set leakage: manifest entries whose video is on a test list (e.g. UCF-Crime's Anomaly_Test.txt).

A test list is a text file with one video per line: a path (`Abuse/Abuse028_x264.mp4`, the UCF-Crime split
files) or a UCF-style temporal-annotation line (`Abuse028_x264  Abuse  165  240  -1  -1`, first field). Videos
are matched by file stem (name without folder and extension), since manifests and test lists name the same
video under different roots (`UCF_Crimes_Videos/UCF_Crimes/Videos/Abuse/Abuse028_x264.mp4` vs
`Abuse/Abuse028_x264.mp4`); two different videos with one stem would be reported too, which is the safe side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from fgclip.data.records import Clip


def video_stem(video: str) -> str:
    return PurePosixPath(video.replace("\\", "/")).stem


def read_test_list(path) -> dict[str, str]:
    """{video stem: the line naming it}; blank lines and `#` comments are skipped."""
    stems: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            text = line.strip()
            if text and not text.startswith("#"):
                stems.setdefault(video_stem(text.split()[0]), text)
    if not stems:
        raise ValueError(f"{path}: the test list names no video")
    return stems


@dataclass
class LeakageReport:
    test_list: str
    num_test_videos: int
    clips_by_video: dict[str, list[Clip]] = field(default_factory=dict)  # test video stem -> clips using it

    @property
    def leaked(self) -> bool:
        return bool(self.clips_by_video)

    @property
    def abnormal_videos(self) -> list[str]:
        """Test videos used by at least one abnormal clip (the others are used by normal clips only)."""
        return sorted(v for v, clips in self.clips_by_video.items() if any(c.is_abnormal for c in clips))

    @property
    def normal_videos(self) -> list[str]:
        abnormal = set(self.abnormal_videos)
        return sorted(v for v in self.clips_by_video if v not in abnormal)

    def entry_counts(self) -> tuple[int, int]:
        clips = [c for cs in self.clips_by_video.values() for c in cs]
        return sum(c.is_abnormal for c in clips), sum(not c.is_abnormal for c in clips)

    def summary(self, max_entries: int = 10) -> str:
        if not self.leaked:
            return f"test-set leakage: none (0 of the {self.num_test_videos} videos of {self.test_list} are used)"
        abnormal_entries, normal_entries = self.entry_counts()
        lines = [
            f"test-set leakage: {len(self.clips_by_video)} of the {self.num_test_videos} test videos of "
            f"{self.test_list} are used by {abnormal_entries + normal_entries} entries",
            f"  abnormal: {len(self.abnormal_videos)} videos, {abnormal_entries} abnormal entries",
            f"  normal:   {len(self.normal_videos)} videos, {normal_entries} normal entries",
            "  entries using test videos:",
        ]
        shown = [c for v in sorted(self.clips_by_video) for c in self.clips_by_video[v]]
        lines += [
            f"    {c.sample_id}  {c.video_key}  ({'abnormal' if c.is_abnormal else 'normal'})"
            for c in shown[:max_entries]
        ]
        if len(shown) > max_entries:
            lines.append(f"    ... and {len(shown) - max_entries} more (--json lists all)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        abnormal_entries, normal_entries = self.entry_counts()
        return {
            "test_list": self.test_list,
            "test_videos": self.num_test_videos,
            "leaked_videos": len(self.clips_by_video),
            "abnormal_videos": self.abnormal_videos,
            "normal_videos": self.normal_videos,
            "abnormal_entries": abnormal_entries,
            "normal_entries": normal_entries,
            "entries": {v: [c.sample_id for c in clips] for v, clips in sorted(self.clips_by_video.items())},
        }


def find_leakage(clips: Iterable[Clip], test_list: str) -> LeakageReport:
    stems = read_test_list(test_list)
    report = LeakageReport(str(test_list), len(stems))
    for clip in clips:
        stem = video_stem(clip.video_key)
        if stem in stems:
            report.clips_by_video.setdefault(stem, []).append(clip)
    return report
