"""`fgclip eval --shard I/N` (array jobs without torchrun) and the merge that turns the shards into one evaluation.

A shard job scores the anomaly-test videos of its shard (`EvalInputs.shard`: videos I, I + N, ... in name order)
and writes `eval.shard-I-of-N.json` (settings, per-video layout and fps, where the frames came from) and
`eval.shard-I-of-N.npz` (per video: snippet class probabilities and anomaly scores, float64) into the output
folder; shard 0 also runs the evaluators that read no video scores (retrieval, hard negatives, region
classification) and stores their sections. `merge_eval_shards` checks that all N shards are there with the same
settings, rebuilds every video's scores exactly (float64 arrays, JSON floats round-trip), and runs the video
evaluators once over all videos -- frame AUC / AP over all frames concatenated, as one process computes them --
so the merged `eval.json` equals the single-process one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from fgclip.data.frames import FrameSource
from fgclip.distributed import Shard
from fgclip.evaluation.anomaly import SnippetLayout, read_temporal_annotations
from fgclip.evaluation.evaluators import (
    EvalContext,
    EvalInputs,
    Evaluation,
    evaluation_report,
    evaluators_needing,
    run_evaluators,
)
from fgclip.evaluation.export import atomic_save_npz, atomic_write_text, read_shard_files
from fgclip.evaluation.snippets import VideoScores
from fgclip.evaluation.zeroshot import load_prompt_set

_SHARD_FILE = re.compile(r"eval\.shard-(\d+)-of-(\d+)\.json$")


class ShardError(ValueError):
    """Eval shards are missing or disagree; the message names the folder and the shard."""


def run_shard(names: list[str], inputs: EvalInputs) -> tuple[dict[str, dict | None], dict[str, VideoScores]]:
    """One explicit shard's part: the sections of the evaluators that read no video scores (shard 0 only) and
    this shard's video scores."""
    shard = inputs.shard
    if shard is None:
        raise ValueError("run_shard needs inputs.shard (an explicit Shard)")
    video_evaluators = evaluators_needing("anomaly_videos", names)
    others = [name for name in names if name not in video_evaluators]
    results = run_evaluators(others, inputs)[0] if shard.index == 0 else {}
    ready = (
        inputs.anomaly_videos is not None and inputs.prompts is not None and inputs.annotations is not None
    )
    scores = EvalContext(inputs).video_scores if video_evaluators and ready else {}
    return results, scores


def write_eval_shard(
    out: Path,
    shard: Shard,
    settings: dict,
    results: dict,
    scores: dict[str, VideoScores],
    inputs: EvalInputs,
    extra: dict | None = None,
) -> Path:
    """`eval.shard-I-of-N.json` + `.npz` (module docstring), `extra`: report entries the merge adds (checkpoint,
    load report); returns the JSON's path."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"eval.shard-{shard.index}-of-{shard.count}"
    videos = {
        name: {"video": str(s.video), "num_frames": s.layout.num_frames, "snippet_frames": s.layout.snippet_frames,
               "frames_per_snippet": s.layout.frames_per_snippet, "fps": s.fps}
        for name, s in scores.items()
    }  # fmt: skip
    arrays = {f"{n}/class_probs": s.snippet_class_probs for n, s in scores.items()}
    arrays.update({f"{n}/scores": s.snippet_scores for n, s in scores.items()})
    atomic_save_npz(out / f"{stem}.npz", arrays)
    anomaly_videos = {n: str(p) for n, p in (inputs.anomaly_videos or {}).items()}
    document = {"shard": [shard.index, shard.count], "settings": settings, "results": results,
                "anomaly_videos": anomaly_videos, "frame_source": inputs.frames.used if inputs.frames else None,
                "videos": videos, "extra": extra or {}}  # fmt: skip
    path = out / f"{stem}.json"
    atomic_write_text(path, json.dumps(document, indent=2))
    return path


def has_eval_shards(out: Path) -> bool:
    return any(_SHARD_FILE.search(p.name) for p in Path(out).glob("eval.shard-*-of-*.json"))


def merge_eval_shards(out: str | Path) -> Evaluation:
    """The single-process evaluation from the shards in `out` (module docstring)."""
    out = Path(out)
    shards = _read_shards(out)
    settings = shards[0]["settings"]
    scores: dict[str, VideoScores] = {}
    used: dict[str, list[str]] = {"decoded": [], "frame_cache": []}
    for index, document in sorted(shards.items()):
        arrays = np.load(out / f"eval.shard-{index}-of-{len(shards)}.npz")
        for name, video in document["videos"].items():
            layout = SnippetLayout(video["num_frames"], video["snippet_frames"], video["frames_per_snippet"])
            scores[name] = VideoScores(
                Path(video["video"]),
                layout,
                video["fps"],
                arrays[f"{name}/class_probs"],
                arrays[f"{name}/scores"],
            )
        for kind, videos in (document["frame_source"] or {}).items():
            used.setdefault(kind, []).extend(videos)
    scores = {name: scores[name] for name in sorted(scores)}
    names = settings["evaluators"]
    video_evaluators = evaluators_needing("anomaly_videos", names)
    results = dict(shards[0]["results"])
    annotations = None
    if scores:
        annotations = read_temporal_annotations(settings["temporal_annotations"])
        frames = FrameSource(settings["image_size"], used=used)
        anomaly_videos = {n: Path(p) for n, p in shards[0]["anomaly_videos"].items()}
        inputs = EvalInputs(model=None, tokenizer=None, prompts=load_prompt_set(settings["prompts"]),
                            annotations=annotations, anomaly_videos=anomaly_videos, frames=frames)  # fmt: skip
        results.update(run_evaluators(video_evaluators, inputs, scores=scores)[0])
    results = {name: results.get(name) for name in names}
    report = {**evaluation_report(results, settings), **shards[0]["extra"]}
    return Evaluation(report, scores, annotations)


def _read_shards(out: Path) -> dict[int, dict]:
    return read_shard_files(out, "eval", ShardError, hint="run fgclip eval --shard I/N first")
