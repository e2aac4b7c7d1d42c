"""Annotation readers. `load_manifest` recognises the format of a file and reads it into `Clip` records:

1. clip list (fgclip-vad / VAGTA, `cliplist.py`) — a list of `{video, global_caption, region_captions,
   box_infos, timestamps}`, or `{"annotation_fps", "clips"}`;
3. legacy normal-clip dict (`normal_dict.py`), converted to clip-list entries in memory;
4. Label Studio `videorectangle` export (`labelstudio.py`), converted likewise;
6. image records (`images.py`), one-frame clips.

(2, the hard-negative file, is joined to a manifest, see `cliplist.read_hard_negatives`; 5, the UCF-Crime
temporal annotation, is evaluation ground truth.) Converted formats go through the clip-list reader, so every
format is validated by one set of rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fgclip.data.errors import EntryProblem, ManifestError
from fgclip.data.formats.cliplist import (
    DEFAULT_READ_OPTIONS,
    HardNegatives,
    ManifestRead,
    ReadOptions,
    load_json,
    read_clip_document,
    read_clip_entries,
    read_hard_negatives,
)
from fgclip.data.formats.conversion import Conversion
from fgclip.data.formats.images import is_image_records, read_image_records
from fgclip.data.formats.labelstudio import convert_labelstudio, is_labelstudio_export
from fgclip.data.formats.normal_dict import convert_normal_dict, is_normal_dict
from fgclip.data.paths import VideoResolver


@dataclass(frozen=True)
class ConvertOptions:
    """How formats 3 and 4 become clip-list entries (see their modules)."""

    video_prefix: str = ""  # normal dict: prepended to its bare video file names
    open_track_end: str = "video_end"  # Label Studio: tracks ending on an enabled keyframe
    caption_field: str | None = None  # Label Studio: the task `data` field holding the global caption


def detect_format(data: Any, source: str) -> str:
    """ "cliplist", "normal_dict", "labelstudio" or "images"; anything else is a ManifestError saying why."""
    if isinstance(data, dict) and "clips" in data:
        return "cliplist"
    if isinstance(data, dict) and "items" in data:
        raise _refuse(
            source, "this is a hard-negative file (format 2): pass it as hard negatives, not a manifest"
        )
    if is_labelstudio_export(data):
        return "labelstudio"
    if is_image_records(data):
        return "images"
    if isinstance(data, list):
        first = data[0] if data else {}
        if data and not (isinstance(first, dict) and "video" in first):
            keys = sorted(first) if isinstance(first, dict) else type(first).__name__
            raise _refuse(
                source, f"a list whose first item ({keys}) is no clip, Label Studio task or image record"
            )
        return "cliplist"
    if is_normal_dict(data):
        return "normal_dict"
    raise _refuse(source, f"unrecognised annotation format (top level: {type(data).__name__})")


def _refuse(source: str, message: str) -> ManifestError:
    return ManifestError([EntryProblem(source, None, None, None, message)])


def convert_document(
    data: Any, source: str, fmt: str, annotation_fps: float | None, convert: ConvertOptions
) -> Conversion:
    if fmt == "normal_dict":
        return convert_normal_dict(data, source, convert.video_prefix)
    if fmt == "labelstudio":
        return convert_labelstudio(
            data, source, annotation_fps, convert.open_track_end, convert.caption_field
        )
    raise ValueError(f"{source}: {fmt} is not a format converted to clip lists")


def load_manifest(
    path: str | Path,
    resolve_video: Callable[[str], Path] | None = None,
    options: ReadOptions = DEFAULT_READ_OPTIONS,
    hard_negatives: HardNegatives | None = None,
    annotation_fps: float | None = None,
    convert: ConvertOptions = ConvertOptions(),
) -> ManifestRead:
    """Read any supported annotation file. Bad entries are in `.problems` (not raised); a file that is not a
    usable manifest at all (unknown format, a caption-only dict, invalid JSON) raises ManifestError."""
    source = str(path)
    data = load_json(path)
    fmt = detect_format(data, source)
    if fmt == "cliplist":
        return read_clip_document(data, source, resolve_video, options, hard_negatives, annotation_fps)
    if fmt == "images":
        return read_image_records(data, source, resolve_video, options)
    conversion = convert_document(data, source, fmt, annotation_fps, convert)
    result = read_clip_entries(
        conversion.entries,
        source,
        resolve_video,
        options,
        hard_negatives,
        conversion.annotation_fps if conversion.annotation_fps is not None else annotation_fps,
        conversion.origins,
        format=fmt,
    )
    result.problems[:0] = conversion.problems
    result.num_entries = conversion.num_source_entries
    return result


def read_manifest(
    path: str | Path,
    resolve_video: Callable[[str], Path] | None = None,
    options: ReadOptions = DEFAULT_READ_OPTIONS,
    hard_negatives: HardNegatives | None = None,
    annotation_fps: float | None = None,
    convert: ConvertOptions = ConvertOptions(),
) -> ManifestRead:
    """`load_manifest`, then refuse the file when it has errors unless `options.invalid_entries == "skip"`."""
    return load_manifest(path, resolve_video, options, hard_negatives, annotation_fps, convert).check(
        options.invalid_entries
    )


@dataclass(frozen=True)
class DataOptions:
    """How a list of manifests is read (built once from the config's `data` section by `fgclip.builders`)."""

    video_root: str = "."
    path_remaps: dict[str, str] = field(default_factory=dict)  # manifest prefix -> local prefix
    read: ReadOptions = DEFAULT_READ_OPTIONS
    convert: ConvertOptions = ConvertOptions()
    hard_negatives: tuple[str, ...] = ()  # files joined to every manifest
    manifest_annotation_fps: dict[str, float] = field(default_factory=dict)  # manifest path -> its grid

    def resolver(self) -> VideoResolver:
        return VideoResolver(self.video_root, self.path_remaps)


def read_manifests(
    paths: Sequence[str | Path],
    options: DataOptions,
    *,
    refuse_errors: bool = True,
    refused: list[tuple[str, ManifestError]] | None = None,
    negatives: HardNegatives | None = None,
) -> list[ManifestRead]:
    """Every manifest of `paths`, in any supported format, with the hard negatives joined; one read per file.
    A manifest with bad entries is refused (ManifestError, `options.read.invalid_entries: error`) unless
    `refuse_errors` is off (checkers and viewers, which show what training would refuse). With `refused`, a
    file that is no usable manifest at all is listed there and the others are still read. `negatives`: the
    hard negatives already read (default: read from `options.hard_negatives`)."""
    if negatives is None:
        negatives = read_hard_negative_files(options.hard_negatives)
    resolver = options.resolver()
    read = read_manifest if refuse_errors else load_manifest
    reads = []
    for path in paths:
        try:
            reads.append(
                read(path, resolver, options.read, negatives, options.manifest_annotation_fps.get(str(path)),
                     options.convert)
            )  # fmt: skip
        except ManifestError as error:
            if refused is None:
                raise
            refused.append((str(path), error))
    return reads


def read_hard_negative_files(paths: Sequence[str | Path]) -> HardNegatives:
    """Every hard-negative file of `paths`, joined into one table (a later file wins on the same region)."""
    negatives: HardNegatives = {}
    for path in paths:
        negatives.update(read_hard_negatives(path))
    return negatives
