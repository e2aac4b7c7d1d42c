"""`fgclip train`: config -> tokenizer, model, datasets, Trainer -> checkpoints, metrics, plots.

Small builders turn the config into plain arguments; modules never receive the config object.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, TrainerCallback, TrainingArguments, set_seed
from transformers.utils.logging import disable_progress_bar

from fgclip.config import (
    ConfigError,
    DataSection,
    ExperimentConfig,
    LoraSection,
    LossSection,
    ModelSection,
    TrainSection,
)
from fgclip.data.collate import ClipCollator
from fgclip.data.dataset import ClipDataset, SamplingOptions
from fgclip.data.formats import ConvertOptions, ManifestRead, read_manifest
from fgclip.data.formats.cliplist import ReadOptions, read_hard_negatives
from fgclip.data.frame_cache import FrameCache
from fgclip.data.leakage import find_leakage
from fgclip.data.paths import VideoResolver
from fgclip.data.records import Clip
from fgclip.data.sampler import BalancedBatchSampler, GroupedShuffleSampler, SamplerEpochCallback
from fgclip.data.text import CaptionTokenizer, build_word_tokenizer
from fgclip.distributed import is_rank_zero
from fgclip.inspect import format_heads, frozen_for_losses, head_rows
from fgclip.losses.objective import FGCLIPObjective, LossWeights
from fgclip.model.configuration import FGCLIPConfig, tiny_config
from fgclip.model.loading import LoadReport, load_pretrained
from fgclip.model.modeling import FGCLIPModel
from fgclip.training.callbacks import LossCurvePlot, MemoryBankSwitch, MetricsLogger, TemperatureClamp
from fgclip.training.checkpoints import (
    RUN_CONFIG_FILE,
    TRAINER_STATE_FILE,
    check_output_dir,
    check_resume_config,
    clear_output_dir,
    latest_checkpoint,
    promote,
    remove_stale_staging,
    staging_path,
)
from fgclip.training.data import EpochSeededDataset, EpochTaggedSampler
from fgclip.training.lock import OutputDirLock
from fgclip.training.lora import apply_lora, unwrap_model
from fgclip.training.nonfinite import NonFiniteGuard
from fgclip.training.report import StepReport
from fgclip.training.trainer import FGCLIPTrainer, GroupRates

FINAL_MODEL_DIR = "model"


@dataclass
class TrainOutcome:
    output_dir: Path
    model_dir: Path
    model: FGCLIPModel
    tokenizer: PreTrainedTokenizerBase
    global_step: int


def build_tokenizer(section: ModelSection) -> PreTrainedTokenizerBase:
    """The tokenizer named in the config, else the checkpoint's own. Never downloaded."""
    if section.tokenizer == "synthetic":
        from fgclip.data.synth import synth_vocabulary

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
    return AutoTokenizer.from_pretrained(source, local_files_only=True)


def build_model(
    section: ModelSection, tokenizer: PreTrainedTokenizerBase
) -> tuple[FGCLIPModel, LoadReport | None]:
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


def sampling_options(data: DataSection, model: FGCLIPModel) -> SamplingOptions:
    return SamplingOptions(
        num_frames=data.num_frames,
        image_size=data.image_size or model.config.vision_config.image_size,
        max_regions=data.max_regions,
        max_hard_negatives=data.max_hard_negatives,
        context_s=data.context_s,
        single_keyframe_hold_s=data.single_keyframe_hold_s,
        caption_max_length=data.caption_max_length,
        global_caption_max_length=data.global_caption_max_length,
    )


def read_options(data: DataSection) -> ReadOptions:
    return ReadOptions(
        annotation_fps=data.annotation_fps,
        box_tolerance=data.box_tolerance,
        invalid_entries=data.invalid_entries,
        image_caption_field=data.image_caption_field,
    )


def convert_options(data: DataSection) -> ConvertOptions:
    return ConvertOptions(open_track_end=data.open_track_end, caption_field=data.labelstudio_caption_field)


def read_clips(data: DataSection, manifests: list[str]) -> list[Clip]:
    """Every manifest, in any supported format, with the hard negatives joined; problems reported on rank 0."""
    negatives: dict = {}
    for path in data.hard_negatives:
        negatives.update(read_hard_negatives(path))
    resolver = VideoResolver(data.video_root, data.path_remaps)
    clips = []
    for manifest in manifests:
        result = read_manifest(
            manifest,
            resolver,
            read_options(data),
            negatives,
            data.manifest_annotation_fps.get(manifest),
            convert_options(data),
        )
        if is_rank_zero():
            print(_read_summary(result), file=sys.stderr, flush=True)  # stdout may be --json
        clips.extend(result.clips)
    return clips


def _read_summary(result: ManifestRead, shown: int = 5) -> str:
    line = (
        f"[data] {result.path} ({result.format}): {len(result.clips)} clips from {result.num_entries} entries; "
        f"{len(result.warnings)} warning(s)"
        + (
            f", {len(result.errors)} error(s): bad entries LEFT OUT (data.invalid_entries=skip)"
            if result.errors
            else ""
        )
    )
    problems = result.errors + result.warnings
    lines = [line] + [f"  {p}" for p in problems[:shown]]
    if len(problems) > shown:
        lines.append(f"  ... {len(problems) - shown} more: `fgclip data check {result.path}` lists them all")
    return "\n".join(lines)


def check_leakage(data: DataSection, clips: list[Clip]) -> None:
    """Refuse (data.test_leakage=error) or loudly report (warn) training clips whose video is on the test list."""
    if data.test_list is None:
        return
    report = find_leakage(clips, data.test_list)
    if not report.leaked:
        if is_rank_zero():
            print(f"[data] {report.summary()}", file=sys.stderr, flush=True)
        return
    if data.test_leakage == "error":
        raise ConfigError(
            f"{report.summary()}\nRefusing to train on test videos: remove those entries, or set "
            "data.test_leakage: warn to train anyway."
        )
    if is_rank_zero():
        print(f"[data] WARNING {report.summary()}", file=sys.stderr, flush=True)


def check_tokenizer(model: FGCLIPModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """The text tower pools at EOS: a tokenizer with another EOS id or more tokens than the model silently breaks it."""
    text = model.config.text_config
    if len(tokenizer) > text.vocab_size:
        raise ConfigError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's text tower embeds {text.vocab_size}: "
            "model.tokenizer does not belong to this checkpoint"
        )
    if text.eos_token_id == 2:  # HF's legacy CLIP configs pool at the largest token id
        if tokenizer.eos_token_id != len(tokenizer) - 1:
            raise ConfigError(
                f"the model pools text at the largest token id (eos_token_id 2, HF's legacy CLIP config) but the "
                f"tokenizer's EOS id {tokenizer.eos_token_id} is not its largest ({len(tokenizer) - 1})"
            )
    elif tokenizer.eos_token_id != text.eos_token_id:
        raise ConfigError(
            f"the model pools text at EOS id {text.eos_token_id} but the tokenizer's EOS id is "
            f"{tokenizer.eos_token_id}: model.tokenizer does not belong to this checkpoint"
        )


def check_caption_lengths(data: DataSection, model: FGCLIPModel) -> None:
    short, long = model.config.text_config.max_position_embeddings, model.config.long_text_max_positions
    if data.caption_max_length > short:
        raise ConfigError(
            f"data.caption_max_length ({data.caption_max_length}) exceeds the model's {short} text positions"
        )
    if data.global_caption_max_length > long:
        raise ConfigError(
            f"data.global_caption_max_length ({data.global_caption_max_length}) exceeds the model's long position "
            f"table ({long}, long_text_max_positions)"
        )


def build_dataset(
    data: DataSection, manifests: list[str], tokenizer, model: FGCLIPModel, train: bool
) -> ClipDataset:
    check_caption_lengths(data, model)
    if not manifests:
        raise ConfigError(
            "data: no manifests given" + (" (data.train_manifests)" if train else " (data.eval_manifests)")
        )
    caption_tokenizer = CaptionTokenizer(tokenizer, data.caption_max_length)
    clips = read_clips(data, manifests)
    if train:
        check_leakage(data, clips)
    options = sampling_options(data, model)
    cache = None
    if data.frame_cache is not None:
        cache = FrameCache(data.frame_cache, size=(options.image_size, options.image_size))
    return ClipDataset(clips, caption_tokenizer, options, train=train, frame_cache=cache)


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
        report_to=[],
        remove_unused_columns=False,
        ddp_broadcast_buffers=False,  # the memory bank is kept identical by all-gathered writes; never overwritten
        # A loss with weight 0 leaves its heads without gradients; DDP must then look for unused parameters.
        ddp_find_unused_parameters=not all(dataclasses.astuple(loss)),
        dataloader_num_workers=data.num_workers,
        dataloader_persistent_workers=data.num_workers > 0,
        disable_tqdm=not train.progress_bar,
        use_cpu=not torch.cuda.is_available(),
    )


def group_rates(train: TrainSection) -> GroupRates:
    base = train.learning_rate
    return GroupRates(
        text=train.text_lr if train.text_lr is not None else base,
        vision=train.vision_lr if train.vision_lr is not None else base,
        heads=train.head_lr if train.head_lr is not None else base,
        temperatures=train.logit_scale_lr if train.logit_scale_lr is not None else base,
    )


def check_precision(model: FGCLIPModel) -> None:
    """Parameters train in fp32; bf16 is autocast only (DESIGN §4)."""
    model = unwrap_model(model)
    wrong = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype != torch.float32})
    if wrong:
        raise ConfigError(
            f"trainable parameters in {wrong}: refusing to train. At these learning rates most bf16 updates round "
            "to zero, so the model would silently not learn. Keep parameters fp32 and use train.bf16: true "
            "(autocast) for speed."
        )


def enabled_losses(loss: LossSection) -> list[str]:
    weights = {
        "global": loss.global_weight,
        "region": loss.region_weight,
        "hard_negative": loss.hard_negative_weight,
    }
    return [name for name, weight in weights.items() if weight]


def check_heads_trainable(model: FGCLIPModel, loss: LossSection) -> None:
    """Refuse to train when a head or temperature an enabled loss needs is frozen (an accident, or say so).
    Works on the bare model and under DDP / peft wrappers."""
    frozen = frozen_for_losses(unwrap_model(model), enabled_losses(loss))
    if frozen:
        lines = [f"{name} (used by the {' and '.join(losses)} loss)" for name, losses in frozen.items()]
        raise ConfigError(
            "frozen parameters that enabled losses train:\n  "
            + "\n  ".join(lines)
            + "\nUnfreeze them, or set that loss's weight to 0 (loss.*_weight) if the loss is not wanted."
        )


def describe_model(
    section: ModelSection, model: FGCLIPModel, load_report: LoadReport | None, lora: LoraSection | None = None
) -> str:
    if load_report is not None:
        loading = load_report.summary()
    else:
        loading = f"model.init={section.init}: fresh initialisation"
    lines = [loading, "heads and temperatures:", format_heads(head_rows(model))]
    if lora is not None:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        adapters = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
        lines.append(
            f"LoRA: rank {lora.rank}, alpha {lora.alpha}, dropout {lora.dropout} on {'/'.join(lora.target_modules)} "
            f"of the {' and '.join(lora.towers)} tower(s): {adapters:,} adapter parameters; "
            f"{trainable:,} of {total:,} parameters trainable"
        )
    return "\n".join(lines)


def train(config: ExperimentConfig, callbacks: list[TrainerCallback] | None = None) -> TrainOutcome:
    output_dir = Path(config.train.output_dir)
    with OutputDirLock(output_dir):  # rank 0, before anything reads or writes the dir
        return _train_locked(config, callbacks, output_dir)


def _train_locked(
    config: ExperimentConfig, callbacks: list[TrainerCallback] | None, output_dir: Path
) -> TrainOutcome:
    resume = resolve_resume(config)
    if not config.train.progress_bar:
        disable_progress_bar()  # HF's "Writing model shards" bars on every save
    set_seed(config.train.seed)  # the same initial model on every rank and in every run of this config
    tokenizer = build_tokenizer(config.model)
    model, load_report = build_model(config.model, tokenizer)
    check_tokenizer(model, tokenizer)
    if config.train.lora is not None:
        model = apply_lora(model, config.train.lora)
    core = unwrap_model(model)
    if is_rank_zero():
        print(describe_model(config.model, core, load_report, config.train.lora), flush=True)
    check_precision(core)
    check_heads_trainable(core, config.loss)
    train_dataset = build_dataset(config.data, config.data.train_manifests, tokenizer, core, train=True)
    args = training_arguments(config.train, config.data, config.loss)
    sampler = EpochTaggedSampler(train_sampler(config, train_dataset, args.world_size))
    with args.main_process_first(local=False, desc="prepare the output dir"):
        if is_rank_zero():
            prepare_output_dir(config, output_dir / RUN_CONFIG_FILE, resume)
    report = StepReport()
    trainer = FGCLIPTrainer(
        model=model,
        args=args,
        train_dataset=EpochSeededDataset(train_dataset, config.train.seed),
        data_collator=ClipCollator(CaptionTokenizer(tokenizer).pad_token_id),
        processing_class=tokenizer,
        objective=FGCLIPObjective(LossWeights(**dataclasses.asdict(config.loss))),
        step_report=report,
        group_rates=group_rates(config.train),
        nonfinite_guard=NonFiniteGuard(output_dir, config.train.max_consecutive_nonfinite),
        train_sampler=sampler,
        run_config_file=output_dir / RUN_CONFIG_FILE,
    )
    trainer.add_callback(SamplerEpochCallback(sampler))  # a resume inside epoch e replays epoch e's order
    samples_per_step = (
        config.train.per_device_batch_size * config.train.gradient_accumulation_steps * args.world_size
    )
    bank = core.memory_bank
    trainer.add_callback(MetricsLogger(report, output_dir, samples_per_step, bank.capacity if bank else None))
    trainer.add_callback(LossCurvePlot(output_dir, core.config.memory_bank_warmup_steps))
    trainer.add_callback(TemperatureClamp(core))
    if bank is not None:
        trainer.add_callback(MemoryBankSwitch(bank, core.config.memory_bank_warmup_steps))
    for callback in callbacks or []:
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    model_dir = save_final_model(trainer, output_dir / FINAL_MODEL_DIR)
    return TrainOutcome(output_dir, model_dir, core, tokenizer, trainer.state.global_step)


def resolve_resume(config: ExperimentConfig) -> Path | None:
    """The checkpoint to resume (numerically latest for "latest"), after the output-dir and settings checks."""
    train = config.train
    check_output_dir(train.output_dir, train.resume, train.overwrite_output_dir)
    if train.resume is None:
        return None
    checkpoint = latest_checkpoint(train.output_dir) if train.resume == "latest" else Path(train.resume)
    if not (checkpoint / TRAINER_STATE_FILE).is_file():
        raise ConfigError(
            f"train.resume: {checkpoint} is not a complete checkpoint (no {TRAINER_STATE_FILE})"
        )
    check_resume_config(checkpoint, config)
    return checkpoint


def prepare_output_dir(config: ExperimentConfig, config_file: Path, resume: Path | None) -> None:
    """Rank 0, before training: overwrite if asked, drop partial saves of a killed run, save the run's config."""
    output_dir = config_file.parent
    if config.train.overwrite_output_dir:
        removed = clear_output_dir(output_dir)
        if removed:
            print(
                f"[output] overwrite_output_dir: removed {', '.join(removed)} from {output_dir}", flush=True
            )
    partial = remove_stale_staging(output_dir)
    if partial:
        print(f"[output] removed partial saves of an interrupted run: {', '.join(partial)}", flush=True)
    if resume is not None:
        print(f"[resume] continuing from {resume}", flush=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    config.save(config_file)


def save_final_model(trainer: FGCLIPTrainer, model_dir: Path) -> Path:
    """`OUTPUT_DIR/model`, written through the staging folder like every checkpoint."""
    staged = staging_path(model_dir)
    if is_rank_zero() and staged.exists():
        shutil.rmtree(staged)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staged))  # every rank: DeepSpeed gathers the weights collectively
    trainer.accelerator.wait_for_everyone()
    if is_rank_zero():
        promote(staged, model_dir)
    trainer.accelerator.wait_for_everyone()
    return model_dir


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
