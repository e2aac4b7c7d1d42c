"""Manifest fuzz: every damaged entry of every annotation format is named (manifest, entry, field), one bad
entry never hides the others, `invalid_entries: skip` leaves out exactly the damaged entries, and damage to a
whole file (not UTF-8, nested too deeply, a number too large for Python) is one line naming the file.

Each family replaces one node of one entry (index 1 of three) of a good document -- every key, list item and
nested value in turn -- by each damaged value of `DAMAGE`, or deletes a key. A case passes when the reader
either accepts the entry (the damage happened to be a valid value) or reports errors that all name the
manifest, the entry and the field, while the undamaged entries are still read.

Run `python tests/data/test_manifest_fuzz.py` for the share of named cases per family.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fgclip.cli import main
from fgclip.data.errors import ManifestError
from fgclip.data.formats import load_manifest, read_manifest
from fgclip.data.formats.cliplist import ReadOptions, read_hard_negatives

HUGE_INT = 10**400  # a JSON integer too large for a float
DAMAGE: list[Any] = [
    None, True, "x", "", -1, 3.5, HUGE_INT, -HUGE_INT, float("nan"), float("inf"), [], [1, 2], {}, {"a": 1},
    [[0.1, 0.1, 0.5, 0.5]], ["a", "b"], {"frame": 1}, "a\x00b.mp4", "x" * 300 + ".mp4",
]  # fmt: skip
DELETE = object()  # the key is removed

_TRACK = [
    {"frame": 25, "bbox": [0.1, 0.1, 0.5, 0.5]},
    {"frame": 50, "bbox": [0.2, 0.1, 0.6, 0.5], "enabled": False},
]


def _clip(i: int) -> dict:
    return {
        "video": f"v{i}.mp4",
        "global_caption": f"a man falls {i}",
        "region_captions": [f"a man {i}"],
        "box_infos": [copy.deepcopy(_TRACK)],
        "timestamps": None,
        "label": "abnormal",
        "group": f"g{i}",
    }


def _normal_clip(i: int) -> dict:
    return {
        "video": f"n{i}.mp4",
        "global_caption": f"a quiet street {i}",
        "region_captions": [f"a car {i}"],
        "box_infos": [[]],
        "timestamps": [1.0, 3.0],
    }


def _image(i: int) -> dict:
    return {
        "f_path": f"img{i}.jpg",
        "label": "normal",
        "caption": f"a long caption {i}",
        "short_caption": f"short {i}",
        "bbox_info": [
            {
                "bbox": [0.1, 0.1, 0.5, 0.5, 0.9],
                "short_expr": f"a dog {i}",
                "long_expr": f"a brown dog {i}",
                "flag_short_neg": 1,
                "short_expr_negs": {"0": f"a cat {i}"},
            }
        ],
    }


def _task(i: int) -> dict:
    sequence = [
        {"frame": 1, "time": 0.04, "x": 10, "y": 10, "width": 20, "height": 20, "enabled": True},
        {"frame": 26, "time": 1.04, "x": 12, "y": 10, "width": 20, "height": 20, "enabled": False},
    ]
    return {
        "id": 100 + i,
        "data": {"video": f"/data/upload/1/t{i}.mp4", "caption": f"a man falls {i}"},
        "annotations": [
            {
                "result": [
                    {
                        "type": "videorectangle",
                        "value": {"labels": [f"a man {i}"], "sequence": sequence, "framesCount": 100},
                    }
                ]
            }
        ],
    }


def _legacy(i: int) -> dict:
    return {"c0": {"timestamps": [[1.0, 3.0]], "global": {"Caption": f"a street {i}"}, "region": [{"caption": f"a car {i}"}]}}  # fmt: skip


@dataclass(frozen=True)
class Family:
    name: str
    entries: list  # three good entries; the one at index 1 is damaged
    wrap: Any = None  # entries -> document (default: the list itself)

    def document(self, entries: list) -> Any:
        return self.wrap(entries) if self.wrap else entries


FAMILIES = [
    Family("cliplist", [_clip(i) for i in range(3)]),
    Family("cliplist normal", [_normal_clip(i) for i in range(3)]),
    Family("cliplist object", [_clip(i) for i in range(3)], lambda e: {"annotation_fps": 25, "clips": e}),
    Family("images", [_image(i) for i in range(3)]),
    Family("labelstudio", [_task(i) for i in range(3)]),
    Family("normal_dict", [_legacy(i) for i in range(3)], lambda e: {f"vid{i}.mp4": v for i, v in enumerate(e)}),
]  # fmt: skip


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every node below an entry (keys of objects, items of lists), parents before children."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _damaged(entry: dict, path: tuple, value: Any) -> dict:
    entry = copy.deepcopy(entry)
    parent = entry
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return entry


@dataclass(frozen=True)
class Case:
    family: Family
    path: tuple
    value: Any

    @property
    def id(self) -> str:
        shown = "delete" if self.value is DELETE else repr(self.value)[:24]
        return f"{self.family.name}:{'.'.join(map(str, self.path))}={shown}"

    def document(self) -> Any:
        entries = list(self.family.entries)
        entries[1] = _damaged(entries[1], self.path, self.value)
        return self.family.document(entries)


def cases() -> list[Case]:
    found = []
    for family in FAMILIES:
        for path in _paths(family.entries[1]):
            for value in [*DAMAGE, DELETE]:
                found.append(Case(family, path, value))
    return found


def _write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))  # writes NaN, Infinity and 10**400's 401 digits as JSON allows
    return path


def outcome(case: Case, folder: Path) -> str:
    """'accepted' / 'named' (every error names manifest, entry and field; the others read), else what failed."""
    path = _write(folder / "m.json", case.document())
    clean = load_manifest(_write(folder / "clean.json", case.family.document(case.family.entries)))
    try:
        read = load_manifest(path)
    except ManifestError as error:
        unnamed = [p for p in error.problems if p.file != str(path) or p.field is None]
        return f"file refused: {error.problems[0]}" if unnamed else "named"
    except Exception as error:  # noqa: BLE001 -- what the fuzz looks for
        return f"crash: {type(error).__name__}: {error}"[:300]
    if not read.errors:
        return "accepted"
    unnamed = [
        p
        for p in read.errors
        if p.file != str(path) or p.field is None or (p.index is None and not p.origin and not p.video)
    ]
    if unnamed:
        return f"unnamed: {unnamed[0]}"
    if len(read.clips) < len(clean.clips) - _clips_of_entry(case.family, clean):
        return f"hid others: {len(read.clips)} of {len(clean.clips)} clips read"
    try:
        skipped = read.check("skip")
    except Exception as error:  # noqa: BLE001
        return f"skip failed: {error}"
    return "named" if skipped.clips == read.clips else "skip kept a damaged entry"


def _clips_of_entry(family: Family, clean) -> int:
    return len(clean.clips) // len(family.entries)


def _case_param(case: Case):
    return pytest.param(case, id=case.id)


@pytest.mark.parametrize("case", [_case_param(c) for c in cases()])
def test_damaged_entry_is_named(case, tmp_path):
    assert outcome(case, tmp_path) in ("accepted", "named")


def test_every_family_has_named_damage():
    """The families are not vacuous: each holds many cases that the reader must (and does) refuse."""
    assert len(cases()) > 1000


# ------------------------------------------------------------------------------------------ file damage
FILE_DAMAGE = [  # (file bytes, what the one line says)
    (b'[{"video": "a\xff\xfe.mp4"}]', "not UTF-8"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
    (b'[{"video": "a.mp4", "timestamps": [' + b"9" * 5000 + b", 1]}]", "number too large"),
    (b"\xef\xbb\xbf[]", "byte-order mark"),
]


@pytest.mark.parametrize(("content", "says"), FILE_DAMAGE, ids=[s for _, s in FILE_DAMAGE])
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_file_level_damage_is_one_line(tmp_path, capsys, content, says, suffix):
    path = tmp_path / f"m{suffix}"
    path.write_bytes(content)
    with pytest.raises(ManifestError) as error:
        load_manifest(path)
    assert len(error.value.problems) == 1 and error.value.problems[0].file == str(path)
    assert says in error.value.problems[0].message
    assert main(["data", "check", str(path), "--no-video"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and str(path) in captured.out + captured.err


def test_file_level_damage_of_a_hard_negative_file(tmp_path):
    path = tmp_path / "hn.json"
    path.write_bytes(b'{"items": [' + b"[" * 5000 + b"]" * 5000 + b"]}")
    with pytest.raises(ManifestError, match="nested too deeply"):
        read_hard_negatives(path)


def test_one_damaged_label_leaves_the_others_reported_and_skip_skips_it(tmp_path):
    """The issue's own cases: a label that is a list or an object, a huge integer in timestamps and a box."""
    entries = [_clip(i) for i in range(6)]
    entries[1]["label"] = ["abnormal"]
    entries[2]["label"] = {"kind": "abnormal"}
    entries[3]["timestamps"] = [HUGE_INT, 2.0]
    entries[4]["box_infos"][0][0]["bbox"] = [0.1, HUGE_INT, 0.5, 0.5]
    entries[5]["global_caption"] = ""
    path = _write(tmp_path / "m.json", entries)
    read = load_manifest(path)
    assert [(p.index, p.field) for p in read.errors] == [
        (1, "label"),
        (2, "label"),
        (3, "timestamps"),
        (4, "box_infos[0][0].bbox"),
        (5, "global_caption"),
    ]
    assert [c.video_key for c in read_manifest(path, options=ReadOptions(invalid_entries="skip")).clips] == [
        "v0.mp4"
    ]


# ----------------------------------------------------------------------------------------------- share
def measure(folder: Path) -> dict[str, tuple[int, int, list[str]]]:
    """family -> (passing, total, first failures)."""
    shares: dict[str, tuple[int, int, list[str]]] = {}
    for case in cases():
        result = outcome(case, folder)
        ok, total, failures = shares.get(case.family.name, (0, 0, []))
        good = result in ("accepted", "named")
        shares[case.family.name] = (
            ok + good,
            total + 1,
            failures if good else [*failures, f"{case.id}: {result}"],
        )
    return shares


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        shares = measure(Path(tmp))
    for name, (ok, total, failures) in shares.items():
        print(f"{name}: {ok}/{total}")
        for failure in failures[: int(sys.argv[1]) if len(sys.argv) > 1 else 3]:
            print("   ", failure)
    ok = sum(s[0] for s in shares.values())
    total = sum(s[1] for s in shares.values())
    print(f"all families: {ok}/{total} named or accepted ({100 * ok / total:.1f} %)")
