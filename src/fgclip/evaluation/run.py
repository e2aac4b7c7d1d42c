"""The one evaluation of a model under a run config, shared by `fgclip demo` and `fgclip eval`.

`evaluate(config, model, tokenizer, options)` reads the eval manifests with the run's data settings
(num_frames, image size, caption length), embeds them, and reports clip / region retrieval R@1/5/10 both
ways, hard-negative accuracy, zero-shot region classification against the prompt classes, and zero-shot
frame-level anomaly AUC / AP (overall, abnormal videos only, per class). The demo calls it on the model it
just trained and `fgclip eval` on the same model loaded from disk, so both report the same numbers by
construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from fgclip.config import ConfigError, ExperimentConfig
from fgclip.data.frame_cache import FrameCache
from fgclip.data.paths import VideoResolver
from fgclip.data.text import CaptionTokenizer
from fgclip.evaluation.anomaly import (
    AnnotationError,
    TemporalAnnotation,
    frame_level_metrics,
    read_temporal_annotations,
)
from fgclip.evaluation.evaluate import (
    embed_dataset,
    region_classification,
    retrieval_metrics,
    score_videos,
    stack_scores,
)
from fgclip.evaluation.snippets import SnippetFrames, VideoScores
from fgclip.evaluation.zeroshot import DEFAULT_SCORING, SCORING_RULES, encode_prompts, load_prompt_set
from fgclip.training.run import build_dataset, sampling_options

GROUND_TRUTH_CONVENTION = (
    "native frames s..e, 0-based, end inclusive (RTFM's make_gt_ucf.py); every frame scored"
)


@dataclass(frozen=True)
class EvalOptions:
    scoring: str = DEFAULT_SCORING  # zero-shot rule, see fgclip.evaluation.zeroshot
    batch_frames: int = 256  # frames decoded and embedded at a time (bounds memory on long videos)
    frame_cache: str | None = None  # read snippet frames from this FrameCache root where it covers a video
    write_frame_cache: bool = False  # fill the cache for videos it does not cover yet
    anomaly_videos: str | None = None  # list file (`Class/Name.mp4` per line); default: the manifests' videos
    anomaly_video_root: str | None = None  # root of that list; default data.video_root
    progress: bool = True

    def __post_init__(self):
        if self.scoring not in SCORING_RULES:
            raise ConfigError(f"scoring must be one of {SCORING_RULES}, got {self.scoring!r}")
        if self.batch_frames < 1:
            raise ConfigError(f"batch_frames must be >= 1, got {self.batch_frames}")


@dataclass
class Evaluation:
    report: dict
    scores: dict[str, VideoScores]  # per anomaly-test video (empty without temporal annotations)
    annotations: dict[str, TemporalAnnotation] | None


def evaluate(config: ExperimentConfig, model, tokenizer, options: EvalOptions = EvalOptions()) -> Evaluation:
    model.eval()
    sampling = sampling_options(config.data, model)
    dataset = build_dataset(config.data, config.data.eval_manifests, tokenizer, model, train=False)
    pad_id = CaptionTokenizer(tokenizer).pad_token_id
    embedded = embed_dataset(model, dataset, pad_id, config.eval.batch_size, options.progress)
    retrieval = retrieval_metrics(embedded)
    prompts = load_prompt_set(config.eval.prompts) if config.eval.prompts else None
    annotations = (
        read_temporal_annotations(config.eval.temporal_annotations)
        if config.eval.temporal_annotations
        else None
    )
    clip_videos = [clip.video.stem for clip in dataset.clips]
    report = {
        "retrieval": retrieval,
        "region_classification": None,
        "frame_level": None,
        "settings": _settings(config, sampling.image_size, options),
    }
    scores: dict[str, VideoScores] = {}
    if prompts is not None:
        max_length = config.data.caption_max_length
        region_bank = encode_prompts(model, tokenizer, prompts, head="region", max_length=max_length)
        report["region_classification"] = region_classification(
            embedded, region_bank, clip_videos, annotations, options.scoring
        )
        if annotations is not None:
            clip_bank = encode_prompts(model, tokenizer, prompts, head="clip", max_length=max_length)
            videos = anomaly_test_videos(config, dataset, annotations, options)
            frames = SnippetFrames(
                sampling.image_size,
                FrameCache(options.frame_cache) if options.frame_cache else None,
                options.write_frame_cache,
            )
            scores = score_videos(
                model, videos, clip_bank, frames, snippet_frames=config.eval.snippet_frames,
                frames_per_snippet=config.eval.frames_per_snippet, batch_frames=options.batch_frames,
                rule=options.scoring, progress=options.progress,
            )  # fmt: skip
            frame_scores, frame_counts = stack_scores(scores)
            report["frame_level"] = frame_level_metrics(frame_scores, annotations, frame_counts)
            report["frame_level"]["annotated_but_not_scored"] = sorted(set(annotations) - set(videos))
            report["frame_source"] = {k: len(v) for k, v in frames.used.items()}
    return Evaluation(_with_summary(report), scores, annotations)


def anomaly_test_videos(config, dataset, annotations, options: EvalOptions) -> dict[str, Path]:
    """Video name -> path of the videos scored for frame-level AUC (see EvalOptions.anomaly_videos)."""
    if options.anomaly_videos is None:
        paths = [clip.video for clip in dataset.clips if clip.video.stem in annotations]
        source = f"eval manifests {config.data.eval_manifests}"
    else:
        listed = Path(options.anomaly_videos)
        if not listed.is_file():
            raise FileNotFoundError(f"anomaly test-video list not found: {listed}")
        resolve = VideoResolver(options.anomaly_video_root or config.data.video_root, config.data.path_remaps)
        paths = [resolve(line.strip()) for line in listed.read_text().splitlines() if line.strip()]
        source = str(listed)
    videos: dict[str, Path] = {}
    for path in paths:
        if videos.setdefault(path.stem, path) != path:
            raise AnnotationError(f"{source}: two videos named {path.stem}: {videos[path.stem]} and {path}")
    unannotated = sorted(set(videos) - set(annotations))
    if unannotated:
        raise AnnotationError(
            f"{source}: {len(unannotated)} video(s) have no temporal annotation, e.g. {unannotated[:5]}"
        )
    missing = sorted(str(p) for p in videos.values() if not p.is_file())
    if missing:
        raise FileNotFoundError(f"{source}: {len(missing)} video file(s) not found, e.g. {missing[:5]}")
    if not videos:
        raise AnnotationError(f"{source}: none of the videos is in the temporal annotation file")
    return videos


def _settings(config: ExperimentConfig, image_size: int, options: EvalOptions) -> dict:
    return {
        "eval_manifests": list(config.data.eval_manifests),
        "num_frames": config.data.num_frames,
        "image_size": image_size,
        "caption_max_length": config.data.caption_max_length,
        "prompts": config.eval.prompts,
        "temporal_annotations": config.eval.temporal_annotations,
        "snippet_frames": config.eval.snippet_frames,
        "frames_per_snippet": config.eval.frames_per_snippet,
        "ground_truth": GROUND_TRUTH_CONVENTION,
        **{k: v for k, v in asdict(options).items() if k != "progress"},
    }


def _with_summary(report: dict) -> dict:
    """The headline figures first (the demo's report.json keys), then the sections."""
    clip, region = report["retrieval"]["clip"], report["retrieval"]["region"]
    overall = (report["frame_level"] or {}).get("overall", {})
    summary = {
        "clip_retrieval_R@1": _with_chance(clip, "text_to_image_R@1"),
        "region_retrieval_R@1": _with_chance(region, "text_to_image_R@1"),
        "frame_auc": {"value": overall.get("auc"), "chance": 0.5},
        "frame_ap": overall.get("ap"),
    }
    return {**summary, **report}


def _with_chance(report: dict, key: str) -> dict:
    value, chance = report[key], report[f"{key}_chance"]
    return {"value": value, "chance": chance, "times_chance": value / chance}
