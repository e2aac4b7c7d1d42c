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
    """Every figure the config allows: retrieval needs eval manifests, region classification also a prompt
    set, frame-level AUC/AP a prompt set and temporal annotations. Missing parts are reported as null."""
    model.eval()
    image_size = sampling_options(config.data, model).image_size
    prompts = load_prompt_set(config.eval.prompts) if config.eval.prompts else None
    annotations = None
    if config.eval.temporal_annotations:
        annotations = read_temporal_annotations(config.eval.temporal_annotations)
    report = {
        "retrieval": None,
        "region_classification": None,
        "frame_level": None,
        "settings": _settings(config, image_size, options),
    }
    dataset = None
    if config.data.eval_manifests:
        dataset = build_dataset(config.data, config.data.eval_manifests, tokenizer, model, train=False)
        pad_id = CaptionTokenizer(tokenizer).pad_token_id
        embedded = embed_dataset(model, dataset, pad_id, config.eval.batch_size, options.progress)
        report["retrieval"] = retrieval_metrics(embedded)
        if prompts is not None:
            bank = prompt_bank(config, model, tokenizer, prompts, head="region")
            videos = [clip.video.stem for clip in dataset.clips]
            report["region_classification"] = region_classification(
                embedded, bank, videos, annotations, options.scoring
            )
    scores: dict[str, VideoScores] = {}
    if prompts is not None and annotations is not None:
        scores, report["frame_level"], report["frame_source"] = _frame_level(
            config, model, tokenizer, prompts, annotations, dataset, image_size, options
        )
    if report["retrieval"] is None and report["frame_level"] is None:
        raise ConfigError(
            "nothing to evaluate: give eval manifests (data.eval_manifests / --data) for retrieval, and/or a "
            "prompt set (eval.prompts / --prompts) with temporal annotations for frame-level AUC"
        )
    return Evaluation(_with_summary(report), scores, annotations)


def _frame_level(
    config, model, tokenizer, prompts, annotations, dataset, image_size: int, options: EvalOptions
):
    bank = prompt_bank(config, model, tokenizer, prompts, head="clip")
    videos = anomaly_test_videos(config, dataset, annotations, options)
    cache = FrameCache(options.frame_cache) if options.frame_cache else None
    frames = SnippetFrames(image_size, cache, options.write_frame_cache)
    scores = score_videos(
        model, videos, bank, frames, snippet_frames=config.eval.snippet_frames,
        frames_per_snippet=config.eval.frames_per_snippet, batch_frames=options.batch_frames,
        rule=options.scoring, progress=options.progress,
    )  # fmt: skip
    frame_scores, frame_counts = stack_scores(scores)
    metrics = frame_level_metrics(frame_scores, annotations, frame_counts)
    metrics["annotated_but_not_scored"] = sorted(set(annotations) - set(videos))
    return scores, metrics, {k: len(v) for k, v in frames.used.items()}


def prompt_bank(config: ExperimentConfig, model, tokenizer, prompts, *, head: str):
    """Prompts encoded like the captions of that head: clip prompts as global captions (long position
    table, `data.global_caption_max_length`), region prompts as region captions (`data.caption_max_length`)."""
    length = config.data.global_caption_max_length if head == "clip" else config.data.caption_max_length
    return encode_prompts(model, tokenizer, prompts, head=head, max_length=length)


def anomaly_test_videos(config, dataset, annotations, options: EvalOptions) -> dict[str, Path]:
    """Video name -> path of the videos scored for frame-level AUC (see EvalOptions.anomaly_videos)."""
    if options.anomaly_videos is None:
        if dataset is None:
            raise ConfigError(
                "frame-level AUC without eval manifests: name the test videos with --anomaly-videos"
            )
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
        "global_caption_max_length": config.data.global_caption_max_length,
        "prompts": config.eval.prompts,
        "temporal_annotations": config.eval.temporal_annotations,
        "snippet_frames": config.eval.snippet_frames,
        "frames_per_snippet": config.eval.frames_per_snippet,
        "ground_truth": GROUND_TRUTH_CONVENTION,
        **{k: v for k, v in asdict(options).items() if k != "progress"},
    }


def _with_summary(report: dict) -> dict:
    """The headline figures first (the demo's report.json keys), then the sections."""
    retrieval = report["retrieval"]
    overall = (report["frame_level"] or {}).get("overall", {})
    summary = {
        "clip_retrieval_R@1": _with_chance(retrieval["clip"], "text_to_image_R@1") if retrieval else None,
        "region_retrieval_R@1": _with_chance(retrieval["region"], "text_to_image_R@1") if retrieval else None,
        "frame_auc": {"value": overall.get("auc"), "chance": 0.5},
        "frame_ap": overall.get("ap"),
    }
    return {**summary, **report}


def _with_chance(report: dict, key: str) -> dict:
    value, chance = report[key], report[f"{key}_chance"]
    return {"value": value, "chance": chance, "times_chance": value / chance}
