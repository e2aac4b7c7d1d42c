"""Each clip's class index in a label prompt set's classes (`Normal`, then each anomaly class).

The clip-list formats carry a normal/abnormal label, not a class. The class of an abnormal clip is read from
its video path, the way UCF-Crime, VAGTA and the synthetic benchmark name videos: a folder of the path named
after the class (`Abuse/Abuse001_x264.mp4`, `videos/Flashing/Flashing0003_x264.mp4`), else the file name's
leading letters (`Abuse001_x264.mp4`), compared without case. An abnormal clip whose path names no class is
UNKNOWN_ANOMALY_CLASS (-1): the video-label loss then takes every anomaly class together as its target.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from fgclip.data.records import Clip

NORMAL_CLASS_INDEX = 0
UNKNOWN_ANOMALY_CLASS = -1
_LEADING_LETTERS = re.compile(r"[A-Za-z]+")


def clip_class_index(clip: Clip, class_names: tuple[str, ...] | None) -> int:
    """0 for a normal clip; the anomaly class's index in `class_names` (index 0 is Normal), else -1."""
    if not clip.is_abnormal:
        return NORMAL_CLASS_INDEX
    if not class_names:
        return UNKNOWN_ANOMALY_CLASS
    index = {name.lower(): i for i, name in enumerate(class_names) if i != NORMAL_CLASS_INDEX}
    path = PurePosixPath(clip.video_key.replace("\\", "/"))
    for folder in reversed(path.parts[:-1]):
        if folder.lower() in index:
            return index[folder.lower()]
    leading = _LEADING_LETTERS.match(path.name)
    if leading and leading.group().lower() in index:
        return index[leading.group().lower()]
    return UNKNOWN_ANOMALY_CLASS
