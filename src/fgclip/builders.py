"""Config -> plain arguments, and loading a finished run: the only code that reads an `ExperimentConfig` to
build library objects.

Every command builds through here (train, doctor, demo, eval, infer, export-features, data check / cache /
show), so a config means the same thing to all of them: the tokenizer, the model, the one `DataOptions` the
manifests are read with (`data_options`), the sampling and snippet options, datasets, the alignment task
with its bank options, the Trainer's arguments and the training sampler, and the evaluation's inputs
(`evaluate`: inputs -> evaluators -> report). Start-up refusals and their wording live in `checks.py`, the
evaluators and the report schema in `fgclip.evaluation.evaluators`. Library modules never see the config.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoTokenizer, PreTrainedTokenizerBase, TrainingArguments

from fgclip import checks
from fgclip.config import (
    ConfigError,
    DataSection,
    ExperimentConfig,
    LossSection,
    ModelSection,
    TrainSection,
    load_config,
    strict_error_message,
)
from fgclip.data.dataset import ClipDataset, SamplingOptions
from fgclip.data.formats import ConvertOptions, DataOptions, read_manifests
from fgclip.data.formats.cliplist import ReadOptions
from fgclip.data.frame_cache import FrameCache
from fgclip.data.frames import FrameSource
from fgclip.data.paths import VideoResolver
from fgclip.data.records import Clip
from fgclip.data.sampler import BalancedBatchSampler, GroupedShuffleSampler
from fgclip.data.text import CaptionTokenizer, build_word_tokenizer
from fgclip.data.text import load_tokenizer as load_tokenizer_directory
from fgclip.evaluation.snippet_options import SnippetOptions
from fgclip.losses.label_prompts import LabelPrompts
from fgclip.losses.objective import FGCLIPObjective, loss_weights
from fgclip.losses.task import AlignmentTask
from fgclip.model.configuration import FGCLIPConfig, tiny_config
from fgclip.model.loading import LoadReport, init_fine_temperatures, load_pretrained
from fgclip.model.modeling import FGCLIPModel
from fgclip.standin import resolve_init
from fgclip.training.checkpoints import RUN_CONFIG_FILE


# ----------------------------------------------------------------------------------------- model, text
def build_tokenizer(section: ModelSection) -> PreTrainedTokenizerBase:
    """The tokenizer named in the config, else the checkpoint's own. Never downloaded."""
    section = dataclasses.replace(section, init=resolve_init(section.init))  # "standin": the shipped one
    if section.tokenizer == "synthetic":
        from fgclip.synthetic import synth_vocabulary

        return build_word_tokenizer(synth_vocabulary())
    source = section.tokenizer or (section.init if Path(section.init).is_dir() else None)
    if source is None and Path(section.init).is_file():
        raise ConfigError(
            f"model.init={section.init!r} is a single checkpoint file (an OpenAI CLIP .pt carries no tokenizer); "
            "set model.tokenizer to a local CLIP tokenizer directory (vocab.json + merges.txt, e.g. saved by "
            "CLIPTokenizer.save_pretrained)"
        )
    if source is None:
        raise ConfigError(
            f"model.init={section.init!r} has no tokenizer of its own; set model.tokenizer to a local tokenizer "
            "directory, or to 'synthetic' for the synthetic benchmark"
        )
    if not Path(source).is_dir():
        raise ConfigError(f"model.tokenizer: {source!r} is not a local directory (nothing is downloaded)")
    try:
        return load_tokenizer_directory(source)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"model.tokenizer: {error}") from error


def build_model(
    section: ModelSection, tokenizer: PreTrainedTokenizerBase
) -> tuple[FGCLIPModel, LoadReport | None]:
    """The model a new run starts from (a resume then loads its checkpoint over it)."""
    try:
        model, report = _build_model(section, tokenizer)
        init_fine_temperatures(model, section.init_fine_temperatures, report)
        return model, report
    except StrictDataclassError as error:  # model options that do not fit the checkpoint's architecture
        raise ConfigError(f"model (init {section.init}): {strict_error_message(error)}") from None


def _build_model(
    section: ModelSection, tokenizer: PreTrainedTokenizerBase
) -> tuple[FGCLIPModel, LoadReport | None]:
    section = dataclasses.replace(section, init=resolve_init(section.init))  # "standin": the shipped one
    if section.init == "tiny":
        config = tiny_config(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **section.tiny,
            **section.options,
        )
        return FGCLIPModel(config), None
    if section.init == "vit-b-32":
        return FGCLIPModel(FGCLIPConfig(**section.options)), None
    return load_pretrained(section.init, allow_partial_load=section.allow_partial_load, **section.options)


def build_task(config: ExperimentConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> AlignmentTask:
    """The objective with the config's term weights, the run's memory-bank options and, when the video-label
    term is on, its label prompt set tokenized with `tokenizer`."""
    objective = FGCLIPObjective(loss_weights(config.loss))
    prompts = None
    if config.loss.video_label_weight:
        if tokenizer is None:
            raise ValueError("build_task: the video-label loss needs the tokenizer to tokenize its prompts")
        prompts = label_prompts(config, tokenizer)
    return AlignmentTask(objective, config.bank, prompts)


def label_prompt_spec(config: ExperimentConfig) -> str | None:
    """The video-label loss's prompt set: `loss.video_label_prompts`, else `eval.prompts`."""
    return config.loss.video_label_prompts or config.eval.prompts


def label_classes(config: ExperimentConfig) -> tuple[str, ...] | None:
    """The label prompt set's classes (Normal first) when the video-label loss is on, else None."""
    spec = label_prompt_spec(config)
    if not config.loss.video_label_weight or not spec:
        return None
    from fgclip.evaluation.zeroshot import load_prompt_set

    return load_prompt_set(spec).classes


def label_prompts(config: ExperimentConfig, tokenizer: PreTrainedTokenizerBase) -> LabelPrompts:
    from fgclip.evaluation.zeroshot import load_prompt_set

    spec = label_prompt_spec(config)
    if not spec:
        raise ConfigError(
            "loss.video_label_weight > 0 needs a label prompt set: loss.video_label_prompts or eval.prompts"
        )
    prompts = load_prompt_set(spec)
    texts, classes = prompts.texts()
    captions = CaptionTokenizer(tokenizer, config.data.global_caption_max_length)
    sequences = captions(texts)
    length = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), length), captions.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return LabelPrompts(
        prompts.classes, ids, mask, torch.tensor(classes), config.loss.video_label_prompts_per_class
    )


# ------------------------------------------------------------------------------------------------ data
def sampling_options(data: DataSection, image_size: int) -> SamplingOptions:
    """`image_size`: the model's input size, used where `data.image_size` is not set."""
    return SamplingOptions(
        num_frames=data.num_frames,
        image_size=data.image_size or image_size,
        max_regions=data.max_regions,
        max_hard_negatives=data.max_hard_negatives,
        context_s=data.context_s,
        single_keyframe_hold_s=data.single_keyframe_hold_s,
        caption_max_length=data.caption_max_length,
        global_caption_max_length=data.global_caption_max_length,
    )


def model_image_size(model: FGCLIPModel) -> int:
    return model.config.vision_config.image_size


def data_options(data: DataSection) -> DataOptions:
    """How the `data` section reads manifests: the one options object every reader takes."""
    return DataOptions(
        video_root=data.video_root,
        path_remaps=dict(data.path_remaps),
        read=ReadOptions(
            annotation_fps=data.annotation_fps,
            box_tolerance=data.box_tolerance,
            invalid_entries=data.invalid_entries,
            image_caption_field=data.image_caption_field,
        ),
        convert=ConvertOptions(
            video_prefix=data.normal_dict_video_prefix,
            open_track_end=data.open_track_end,
            caption_field=data.labelstudio_caption_field,
        ),
        hard_negatives=tuple(data.hard_negatives),
        manifest_annotation_fps=dict(data.manifest_annotation_fps),
    )


def read_clips(data: DataSection, manifests: list[str], probe: str | None = None) -> list[Clip]:
    """The clips of `manifests`; each manifest's problems are summarised on rank 0 (stderr: stdout may be --json).
    `probe` ("training", "evaluation"): every video is then probed before anything runs (`checks.probe_clips`)."""
    reads = read_manifests(manifests, data_options(data))
    clips = checks.summarised_clips(reads)
    return checks.probe_clips(data, clips, reads, probe) if probe is not None else clips


def frame_cache(data: DataSection, image_size: int) -> FrameCache | None:
    if data.frame_cache is None:
        return None
    return FrameCache(data.frame_cache, size=(image_size, image_size))


def build_dataset(
    data: DataSection,
    clips: list[Clip],
    tokenizer: PreTrainedTokenizerBase,
    image_size: int,
    train: bool,
    class_names: tuple[str, ...] | None = None,
) -> ClipDataset:
    """A dataset over already-read clips (`read_clips`), so the clips are read once per command.
    `class_names`: the label prompt set's classes (`label_classes`), for each clip's class index."""
    options = sampling_options(data, image_size)
    return ClipDataset(
        clips,
        CaptionTokenizer(tokenizer, data.caption_max_length),
        options,
        train=train,
        frame_cache=frame_cache(data, options.image_size),
        class_names=class_names,
    )


def dataset_from_manifests(
    data: DataSection, manifests: list[str], tokenizer: PreTrainedTokenizerBase, image_size: int, train: bool
) -> ClipDataset:
    """`read_clips` + `build_dataset`: for callers that need the dataset only."""
    return build_dataset(data, read_clips(data, manifests), tokenizer, image_size, train)


def train_sampler(
    config: ExperimentConfig, dataset: ClipDataset, world_size: int
) -> GroupedShuffleSampler | BalancedBatchSampler:
    """Order = f(seed, epoch): balanced and/or group-aware when asked, else a plain shuffle (groups of one).

    See data/sampler.py for how the order is split across ranks.
    """
    data, seed = config.data, config.train.seed
    groups = [clip.group if data.batch_by_group else None for clip in dataset.clips]
    if data.balance:
        return BalancedBatchSampler(
            dataset.labels(), config.train.per_device_batch_size, seed, groups, world_size=world_size
        )
    return GroupedShuffleSampler(groups, seed=seed)


# -------------------------------------------------------------------------------------------- training
def training_arguments(
    train: TrainSection, data: DataSection, loss: LossSection | None = None
) -> TrainingArguments:
    loss = loss if loss is not None else LossSection()
    return TrainingArguments(
        output_dir=train.output_dir,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.per_device_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        learning_rate=train.learning_rate,
        weight_decay=train.weight_decay,
        adam_beta1=0.9,
        adam_beta2=0.98,  # CLIP's betas and eps: the contrastive loss is noisy at small batch sizes
        adam_epsilon=1e-6,
        warmup_steps=train.warmup_steps,
        lr_scheduler_type=train.lr_scheduler,
        max_grad_norm=train.max_grad_norm,
        logging_steps=train.logging_steps,
        logging_strategy="no",  # MetricsLogger writes every optimizer step and prints every logging_steps
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        seed=train.seed,
        bf16=train.bf16,
        activation_checkpointing=train.gradient_checkpointing,
        deepspeed=train.deepspeed,
        report_to=hf_report_to(train.report_to),
        remove_unused_columns=False,
        ddp_broadcast_buffers=False,  # the memory bank is kept identical by all-gathered writes; never overwritten
        # A loss with weight 0 leaves its heads without gradients; DDP must then look for unused parameters.
        ddp_find_unused_parameters=not all(dataclasses.astuple(loss)),
        dataloader_num_workers=data.num_workers,
        dataloader_persistent_workers=data.num_workers > 0,
        disable_tqdm=not train.progress_bar,
        use_cpu=not torch.cuda.is_available(),
    )


def hf_report_to(names: list[str]) -> list[str]:
    """`train.report_to` minus "tensorboard" (fgclip's MetricsLogger writes TensorBoard itself; HF's callback
    would log a second, thinner copy), checked against the integrations HF's Trainer knows."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    unknown = [name for name in names if name not in INTEGRATION_TO_CALLBACK]
    if unknown:
        raise ConfigError(
            f"train.report_to: unknown tracker(s) {unknown}; HF Trainer integrations: {sorted(INTEGRATION_TO_CALLBACK)}"
        )
    return [name for name in dict.fromkeys(names) if name != "tensorboard"]


def group_rates(train: TrainSection):
    from fgclip.training.trainer import GroupRates

    base = train.learning_rate
    return GroupRates(
        text=train.text_lr if train.text_lr is not None else base,
        vision=train.vision_lr if train.vision_lr is not None else base,
        heads=train.head_lr if train.head_lr is not None else base,
        temperatures=train.logit_scale_lr if train.logit_scale_lr is not None else base,
    )


# ------------------------------------------------------------------------------ a finished run's model
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


@dataclass
class LoadedRun:
    checkpoint: Path
    config_path: Path
    config: ExperimentConfig
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    load_report: LoadReport


def run_config_path(checkpoint: Path, config: str | Path | None = None) -> Path:
    """`config` when given; else the checkpoint's own fgclip_config.yaml, else its run directory's (checkpoint-N)."""
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"run config not found: {path}")
        return path
    for candidate in (checkpoint / RUN_CONFIG_FILE, checkpoint.parent / RUN_CONFIG_FILE):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"{checkpoint}: no {RUN_CONFIG_FILE} in it or in its parent (the run directory); "
        "give the run's config with --config"
    )


def load_tokenizer(checkpoint: Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the checkpoint (the Trainer writes it next to the weights)."""
    if not any((checkpoint / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(
            f"{checkpoint}: no tokenizer files ({', '.join(TOKENIZER_FILES)}) next to the weights"
        )
    return AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)


def load_run(
    checkpoint: str | Path,
    *,
    config: str | Path | None = None,
    overrides: list[str] | None = None,
    device: str | None = None,
    allow_random_init: bool = False,
) -> LoadedRun:
    """Model (exact load, see `load_pretrained`), tokenizer and run config with `--key value` overrides."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {checkpoint}")
    config_path = run_config_path(checkpoint, config)
    run_config = load_config(config_path, overrides)
    model, report = load_pretrained(checkpoint)
    if report.random_init and not allow_random_init:
        raise ConfigError(
            f"{checkpoint}: a config.json without weights: the model would be RANDOM and its scores meaningless; "
            "evaluate a trained checkpoint, or pass --allow-random-init for a deliberate smoke test"
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    return LoadedRun(checkpoint, config_path, run_config, model, load_tokenizer(checkpoint), report)


def input_image_size(section: ModelSection) -> int:
    """The model's input size without building the model: the tiny config's, or the checkpoint's config.json
    (`standin`: the shipped stand-in's)."""
    section = dataclasses.replace(section, init=resolve_init(section.init))
    if section.init == "tiny":
        return int(section.tiny.get("image_size", tiny_config().vision_config.image_size))
    if section.init == "vit-b-32":
        return FGCLIPConfig().vision_config.image_size
    path = Path(section.init)
    config_file = path / "config.json" if path.is_dir() else path
    if config_file.name == "config.json" and config_file.is_file():
        return FGCLIPConfig.from_pretrained(str(config_file.parent)).vision_config.image_size
    raise ConfigError(
        f"model.init={section.init!r}: the input size cannot be read without loading the checkpoint; "
        "give it (--size, or data.image_size)"
    )


# ------------------------------------------------------------------------------------------ evaluation
GROUND_TRUTH_CONVENTION = (
    "native frames s..e, 0-based, end inclusive (RTFM's make_gt_ucf.py); every frame scored"
)


@dataclass(frozen=True)
class EvalOptions:
    """What `fgclip eval` takes besides the run config."""

    scoring: str = "softmax_sum"  # zero-shot rule, see fgclip.evaluation.zeroshot
    batch_frames: int = SnippetOptions.batch_frames  # frames decoded and embedded at a time (bounds memory)
    workers: int = SnippetOptions.workers  # snippet-decoding worker processes (0: decode in the main process)
    frame_cache: str | None = None  # read snippet frames from this FrameCache root where it covers a video
    write_frame_cache: bool = False  # fill the cache for videos it does not cover yet
    anomaly_videos: str | None = None  # list file (`Class/Name.mp4` per line); default: the manifests' videos
    anomaly_video_root: str | None = None  # root of that list; default data.video_root
    progress: bool = True

    def __post_init__(self):
        from fgclip.evaluation.zeroshot import SCORING_RULES

        if self.scoring not in SCORING_RULES:
            raise ConfigError(f"scoring must be one of {SCORING_RULES}, got {self.scoring!r}")
        if self.batch_frames < 1:
            raise ConfigError(f"batch_frames must be >= 1, got {self.batch_frames}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")


def build_eval_inputs(config: ExperimentConfig, model, tokenizer, options: EvalOptions):
    """The evaluators' inputs: eval clips (read once), prompts, ground truth, test videos, frame source."""
    from fgclip.evaluation.anomaly import read_temporal_annotations
    from fgclip.evaluation.evaluators import EvalInputs, evaluators_needing
    from fgclip.evaluation.zeroshot import load_prompt_set

    data = config.data
    image_size = sampling_options(data, model_image_size(model)).image_size
    dataset = None
    if data.eval_manifests:
        checks.check_caption_lengths(data, model)
        clips = read_clips(data, data.eval_manifests, probe="evaluation")
        dataset = build_dataset(data, clips, tokenizer, model_image_size(model), train=False)
    annotations = None
    if config.eval.temporal_annotations:
        annotations = read_temporal_annotations(config.eval.temporal_annotations)
    prompts = load_prompt_set(config.eval.prompts) if config.eval.prompts else None
    anomaly_videos = None
    if (
        prompts is not None
        and annotations is not None
        and evaluators_needing("anomaly_videos", config.eval.evaluators)
    ):
        anomaly_videos = checks.probe_test_videos(
            data, anomaly_test_videos(config, dataset, annotations, options)
        )
    cache = FrameCache(options.frame_cache) if options.frame_cache else None
    return EvalInputs(
        model=model,
        tokenizer=tokenizer,
        dataset=dataset,
        pad_token_id=CaptionTokenizer(tokenizer).pad_token_id,
        batch_size=config.eval.batch_size,
        prompts=prompts,
        prompt_lengths={"clip": data.global_caption_max_length, "region": data.caption_max_length},
        annotations=annotations,
        anomaly_videos=anomaly_videos,
        frames=FrameSource(image_size, cache, options.write_frame_cache),
        snippet=snippet_options(config, options.batch_frames, options.workers),
        pooling=snippet_pooling(config),
        scoring=options.scoring,
        progress=options.progress,
        twins=read_twins(config.eval.twins, dataset.clips) if config.eval.twins and dataset else None,
    )


def snippet_options(
    config: ExperimentConfig,
    batch_frames: int = SnippetOptions.batch_frames,
    workers: int = SnippetOptions.workers,
) -> SnippetOptions:
    """The run's snippet layout (`eval` section) with the command's decoding settings, built once and passed whole
    to scoring, inference and feature export."""
    return SnippetOptions(config.eval.snippet_frames, config.eval.frames_per_snippet, batch_frames, workers)


def read_twins(path: str, clips: list[Clip]) -> dict:
    """{abnormal video stem: its normal twin's clip} from `eval.twins` (see EvalSection.twins)."""
    from fgclip.evaluation.localization import twin_clips

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"eval.twins {path}: cannot be read as JSON ({error})") from None
    pairs = data.get("twins", data) if isinstance(data, dict) else None
    if not isinstance(pairs, dict) or not all(isinstance(v, str) for v in pairs.values()):
        raise ConfigError(
            f"eval.twins {path}: expected {{normal video stem: abnormal video stem}} or 'twins' of it"
        )
    return twin_clips(clips, pairs)


def snippet_pooling(config: ExperimentConfig):
    """What zero-shot snippet scores are read from; a window pools as many frames as training clips have."""
    from fgclip.evaluation.pooling import SnippetPooling

    return SnippetPooling(config.eval.snippet_pooling, config.eval.window_s, config.data.num_frames)


def anomaly_test_videos(
    config: ExperimentConfig, dataset, annotations, options: EvalOptions
) -> dict[str, Path]:
    """Video name -> path of the videos scored for frame-level AUC (see EvalOptions.anomaly_videos)."""
    from fgclip.evaluation.anomaly import AnnotationError

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


def evaluate(config: ExperimentConfig, model, tokenizer, options: EvalOptions = EvalOptions()):
    """Inputs -> evaluators -> report: every evaluator of `eval.evaluators` whose inputs the config gives (each
    declares its needs, `fgclip.evaluation.evaluators`); the others are reported as null. `fgclip eval` and
    `fgclip demo` both report through this."""
    from fgclip.distributed import is_rank_zero
    from fgclip.evaluation.evaluators import Evaluation, evaluation_report, run_evaluators

    model.eval()
    inputs = build_eval_inputs(config, model, tokenizer, options)
    if not is_rank_zero():  # under torchrun: the other ranks score their shard of the videos only
        inputs = dataclasses.replace(inputs, dataset=None)
    results, scores = run_evaluators(config.eval.evaluators, inputs)
    if not any(results.values()) and is_rank_zero():
        raise ConfigError(
            "nothing to evaluate: give eval manifests (data.eval_manifests / --data) for retrieval, and/or a "
            "prompt set (eval.prompts / --prompts) with temporal annotations for frame-level AUC"
        )
    report = evaluation_report(results, _eval_settings(config, inputs.frames.image_size, options))
    return Evaluation(report, scores, inputs.annotations)


def evaluate_shard(
    config: ExperimentConfig,
    model,
    tokenizer,
    options: EvalOptions,
    shard,
    out: Path,
    extra: dict | None = None,
) -> Path:
    """One `--shard I/N` job of `fgclip eval`: this shard's video scores (and, shard 0, the other evaluators)
    written into `out` for `fgclip merge` (`fgclip.evaluation.shards`); `extra` joins the merged report.
    Returns the shard file."""
    from fgclip.evaluation.shards import run_shard, write_eval_shard

    model.eval()
    inputs = dataclasses.replace(build_eval_inputs(config, model, tokenizer, options), shard=shard)
    results, scores = run_shard(config.eval.evaluators, inputs)
    settings = _eval_settings(config, inputs.frames.image_size, options)
    return write_eval_shard(Path(out), shard, settings, results, scores, inputs, extra or {})


def _eval_settings(config: ExperimentConfig, image_size: int, options: EvalOptions) -> dict:
    return {
        "evaluators": list(config.eval.evaluators),
        "eval_manifests": list(config.data.eval_manifests),
        "num_frames": config.data.num_frames,
        "image_size": image_size,
        "caption_max_length": config.data.caption_max_length,
        "global_caption_max_length": config.data.global_caption_max_length,
        "prompts": config.eval.prompts,
        "temporal_annotations": config.eval.temporal_annotations,
        "twins": config.eval.twins,
        "snippet_frames": config.eval.snippet_frames,
        "frames_per_snippet": config.eval.frames_per_snippet,
        "snippet_pooling": config.eval.snippet_pooling,
        **({"window_s": config.eval.window_s} if config.eval.snippet_pooling == "window" else {}),
        "ground_truth": GROUND_TRUTH_CONVENTION,
        **{k: v for k, v in dataclasses.asdict(options).items() if k != "progress"},
    }


def prompt_bank(config: ExperimentConfig, model, tokenizer, prompts, *, head: str):
    """Prompts encoded like the captions of that head: clip prompts as global captions (long position
    table, `data.global_caption_max_length`), region prompts as region captions (`data.caption_max_length`)."""
    from fgclip.evaluation.zeroshot import encode_prompts

    length = config.data.global_caption_max_length if head == "clip" else config.data.caption_max_length
    return encode_prompts(model, tokenizer, prompts, head=head, max_length=length)
