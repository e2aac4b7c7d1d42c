"""`fgclip data check`: validate manifests (and their videos), summarise them, report test-set leakage.

Every problem names the manifest, the entry index, the video and the field (`EntryProblem`). Errors make the
command exit 1; warnings are interpretations the readers applied (see each format's module) and duplicates.
With videos (the default), each video is probed once (header read, no decoding; `fgclip.data.probe`, the same
checks and wording as the start-up probe of train / eval): a missing or unreadable video is an error for every
entry using it, and so is a keyframe or span start past the video's end (a wrong annotation grid or the wrong
video); a span end past the end is clamped (warning). `scan` (`--scan`) also reads every packet without decoding
it, so a file holding fewer frames than its header promises (cut short, garbage mid-file) is an error too.
"""

from __future__ import annotations

import os
import shlex
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgclip import builders, checks
from fgclip.config import DataSection
from fgclip.data.dataset import SamplingOptions, clip_span, sample_times
from fgclip.data.errors import WARNING, EntryProblem, ManifestError
from fgclip.data.formats import DataOptions, ManifestRead, read_hard_negative_files, read_manifests
from fgclip.data.formats.cliplist import HardNegatives
from fgclip.data.leakage import LeakageReport, find_leakage
from fgclip.data.probe import ProbeIndex, clip_problems, probe_media, problem
from fgclip.data.records import Clip
from fgclip.data.tracks import box_at

CLIP_TEXT_POSITIONS = 77


@dataclass
class CheckOptions:
    data: DataOptions = field(
        default_factory=DataOptions
    )  # how the manifests are read: as training reads them
    check_videos: bool = True
    test_list: str | None = None
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    tokenizer: object | None = None  # an HF tokenizer: caption lengths in tokens instead of words
    scan: bool = False  # also read every packet of every video (no decoding): truncated / corrupt files
    probe_index: str | None = None  # JSON index of probe results (None: none kept)
    workers: int = 8  # videos probed at a time


def check_options(
    data: DataSection, *, check_videos: bool = True, tokenizer=None, scan: bool = False
) -> CheckOptions:
    """`fgclip data check` with a run's `data` section (the same reading as `builders.read_clips`)."""
    return CheckOptions(
        data=builders.data_options(data),
        check_videos=check_videos,
        test_list=data.test_list,
        sampling=builders.sampling_options(data, data.image_size or SamplingOptions.image_size),
        tokenizer=tokenizer,
        scan=scan,
        probe_index=str(checks.probe_index_path(data)),
        workers=min(16, os.cpu_count() or 1),
    )


ShowCommand = Callable[[str, int], str]


def plain_show_command(manifest: str, entry: int) -> str:
    return f"fgclip data show {shlex.quote(manifest)} --entry {entry}"


@dataclass
class CheckReport:
    manifests: list[ManifestRead]
    refused: list[tuple[str, ManifestError]]  # files that are no usable manifest at all
    problems: list[EntryProblem]  # found here: videos, durations, duplicates, hard negatives
    summary: dict
    leakage: LeakageReport | None
    show_command: ShowCommand = plain_show_command  # (manifest, entry) -> how to look at a flagged entry

    @property
    def all_problems(self) -> list[EntryProblem]:
        refused = [p for _, error in self.refused for p in error.problems]
        return refused + [p for m in self.manifests for p in m.problems] + self.problems

    @property
    def num_errors(self) -> int:
        return sum(p.is_error for p in self.all_problems)

    @property
    def exit_code(self) -> int:
        return 1 if self.num_errors else 0

    def show_commands(self) -> list[str]:
        """`fgclip data show` for each flagged entry that is still read as a clip (an entry refused for its
        errors leaves nothing to draw)."""
        readable = {(m.path, int(c.sample_id.rpartition(":")[2])) for m in self.manifests for c in m.clips}
        flagged = dict.fromkeys((p.file, p.index) for p in self.all_problems if (p.file, p.index) in readable)
        return [self.show_command(f, i) for f, i in flagged]

    def to_dict(self) -> dict:
        return {
            "manifests": [
                {
                    "path": m.path,
                    "format": m.format,
                    "entries": m.num_entries,
                    "clips": len(m.clips),
                    "annotation_fps": m.annotation_fps,
                    "skipped_entries": m.skipped_entries,
                }
                for m in self.manifests
            ],
            "refused": [
                {"path": path, "problems": [p.to_dict() for p in e.problems]} for path, e in self.refused
            ],
            # each problem as {"manifest", "entry", "video", "field", "message", "severity", "origin"}
            "errors": [p.to_dict() for p in self.all_problems if p.is_error],
            "warnings": [p.to_dict() for p in self.all_problems if not p.is_error],
            "summary": self.summary,
            "leakage": self.leakage.to_dict() if self.leakage is not None else None,
            "show_commands": self.show_commands(),
            "exit_code": self.exit_code,
        }

    def format_text(self, shown: int = 30) -> str:
        lines = []
        for path, error in self.refused:
            lines.append(f"{path}: REFUSED, not a usable manifest:")
            lines += [f"  {p}" for p in error.problems]
        for m in self.manifests:
            lines.append(
                f"{m.path}: {m.format}, {m.num_entries} entries -> {len(m.clips)} clips"
                + (f" (annotation grid {m.annotation_fps:g} fps)" if m.annotation_fps else "")
                + (f"; entries with errors: {m.skipped_entries}" if m.skipped_entries else "")
            )
        errors = [p for p in self.all_problems if p.is_error]
        warnings = [p for p in self.all_problems if not p.is_error]
        for title, items in (("errors", errors), ("warnings", warnings)):
            if items:
                lines.append(f"{len(items)} {title}:")
                lines += [f"  {p}" for p in items[:shown]]
                if len(items) > shown:
                    lines.append(f"  ... and {len(items) - shown} more (--json lists all)")
        commands = self.show_commands()
        if commands:
            lines.append(f"look at the {len(commands)} flagged entries as the model receives them:")
            lines += [f"  {c}" for c in commands[:shown]]
            if len(commands) > shown:
                lines.append(f"  ... and {len(commands) - shown} more (--json lists all)")
        lines.append("summary:")
        lines += [f"  {key}: {_format_value(value)}" for key, value in self.summary.items()]
        if self.leakage is not None:
            lines.append(self.leakage.summary())
        lines.append(f"{len(errors)} error(s), {len(warnings)} warning(s) -> exit code {self.exit_code}")
        return "\n".join(lines)


def _format_value(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def check_manifests(
    paths: Sequence[str], options: CheckOptions, show_command: ShowCommand = plain_show_command
) -> CheckReport:
    """`show_command(manifest, entry)`: how the report tells the user to look at a flagged entry."""
    negatives = read_hard_negative_files(options.data.hard_negatives)
    refused: list[tuple[str, ManifestError]] = []
    manifests = read_manifests(paths, options.data, refuse_errors=False, refused=refused, negatives=negatives)
    clips = [c for m in manifests for c in m.clips]
    problems = _duplicates(clips, manifests) + _orphan_hard_negatives(negatives, manifests)
    durations: dict[Path, float] = {}
    if options.check_videos:
        video_problems, durations = _check_videos(clips, manifests, options)
        problems += video_problems
    summary = _summary(manifests, clips, durations, options)
    leakage = find_leakage(clips, options.test_list) if options.test_list else None
    return CheckReport(manifests, refused, problems, summary, leakage, show_command)


def _clip_identity(clip: Clip) -> tuple:
    regions = tuple((r.caption, r.track, r.hard_negatives) for r in clip.regions)
    return clip.video_key, clip.timestamps, clip.global_caption, clip.label, regions


def _duplicates(clips: list[Clip], manifests: list[ManifestRead]) -> list[EntryProblem]:
    first: dict[tuple, Clip] = {}
    problems = []
    for clip in clips:
        original = first.setdefault(_clip_identity(clip), clip)
        if original is not clip:
            problems.append(
                problem(
                    clip, manifests, None, f"duplicate of {original.sample_id} (trained on twice)", WARNING
                )
            )
    return problems


def _orphan_hard_negatives(negatives: HardNegatives, manifests: list[ManifestRead]) -> list[EntryProblem]:
    used = set().union(*(m.hard_negatives_used for m in manifests)) if manifests else set()
    return [
        EntryProblem(
            item.file, item.item_index, video, "region_index",
            f"hard negatives for region {region} match no region of the manifests checked", WARNING,
        )
        for (video, region), item in negatives.items()
        if (video, region) not in used
    ]  # fmt: skip


def _check_videos(clips, manifests, options: CheckOptions) -> tuple[list[EntryProblem], dict[Path, float]]:
    """Each video probed once (`fgclip.data.probe`: the same checks and wording as training's start-up probe)."""
    videos = [c.video for c in clips if not c.is_image]
    images = [c.video for c in clips if c.is_image]
    probes = probe_media(
        videos,
        images=images,
        index=ProbeIndex(options.probe_index),
        workers=options.workers,
        scan=options.scan,
    )
    durations = {path: p.info.duration_s for path, p in probes.items() if p.info is not None}
    return clip_problems(clips, manifests, probes), durations


def _summary(manifests, clips: list[Clip], durations: dict[Path, float], options: CheckOptions) -> dict:
    sampling = options.sampling
    regions_per_clip = Counter(min(len(c.regions), 6) for c in clips)
    tracks = [r.track for c in clips for r in c.regions if r.track is not None]
    keyframes = [len(t.keyframes) for t in tracks]
    over_max = sum(max(0, len(c.regions) - sampling.max_regions) for c in clips)
    unseen = _regions_unseen_by_uniform_sampling(clips, durations, sampling)
    summary = {
        "clips": len(clips),
        "normal clips": sum(not c.is_abnormal for c in clips),
        "abnormal clips": sum(c.is_abnormal for c in clips),
        "image records": sum(c.is_image for c in clips),
        "videos": len({c.video_key for c in clips}),
        "regions per clip": {("6+" if k == 6 else k): v for k, v in sorted(regions_per_clip.items())},
        "tracks": len(tracks),
        "keyframes per track": _distribution(keyframes),
        "single-keyframe tracks": sum(k == 1 for k in keyframes),
        "box coordinates clipped into [0,1]": sum(m.boxes_clipped for m in manifests),
        "hard negatives dropped (equal to their region's caption)": sum(
            m.hard_negatives_dropped for m in manifests
        ),
        f"regions dropped (over max_regions={sampling.max_regions})": over_max,
        f"regions uniform {sampling.num_frames}-frame sampling would miss (frames are reserved for them)": unseen,
    }
    summary.update(_caption_lengths(clips, options.tokenizer))
    return summary


def _distribution(values: list[int]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "min": min(values),
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "max": max(values),
    }


def _regions_unseen_by_uniform_sampling(clips, durations, sampling: SamplingOptions) -> int:
    """Regions that plain uniform sampling would miss; the dataset reserves frames for them (data/sampling.py)."""
    unseen = 0
    for clip in clips:
        if clip.is_image or not any(r.track is not None for r in clip.regions):
            continue
        duration = durations.get(clip.video, float("inf"))
        span = clip_span(clip, duration, sampling)
        times = sample_times(span, sampling.num_frames)
        for region in clip.regions[: sampling.max_regions]:
            if region.track is not None and all(
                box_at(region.track, float(t), sampling.single_keyframe_hold_s) is None for t in times
            ):
                unseen += 1
    return unseen


def _caption_lengths(clips: list[Clip], tokenizer) -> dict:
    unit = "tokens" if tokenizer is not None else "words"
    lengths = {"global": [], "region": []}
    for clip in clips:
        lengths["global"].append(clip.global_caption)
        lengths["region"].extend(r.caption for r in clip.regions)
    result = {}
    for kind, texts in lengths.items():
        if tokenizer is not None:
            counts = (
                [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]] if texts else []
            )
        else:
            counts = [len(t.split()) for t in texts]
        stats = _distribution(counts)
        if counts:
            stats["p95"] = float(np.percentile(counts, 95))
            if tokenizer is not None:
                stats[f"over {CLIP_TEXT_POSITIONS}"] = sum(c > CLIP_TEXT_POSITIONS for c in counts)
        result[f"{kind} caption {unit}"] = stats
    return result
