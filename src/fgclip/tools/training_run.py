"""A training run: config -> tokenizer, model, task, dataset, Trainer -> checkpoints, metrics, plots,
`OUTPUT_DIR/model`. `fgclip train`, the demo, the benchmarks and the tests run it.

The steps read top to bottom in `train`; every object is built by `fgclip.builders`, every refusal is a
check of `fgclip.checks` (the same ones `fgclip doctor` reports).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase, TrainerCallback, set_seed
from transformers.utils.logging import disable_progress_bar

from fgclip import builders, checks
from fgclip.config import ConfigError, ExperimentConfig, LoraSection, ModelSection
from fgclip.data.collate import ClipCollator
from fgclip.data.epochs import EpochSeededDataset, EpochTaggedSampler
from fgclip.data.text import CaptionTokenizer
from fgclip.distributed import is_rank_zero
from fgclip.losses.heads import format_heads, head_rows
from fgclip.model.loading import LoadReport
from fgclip.model.modeling import FGCLIPModel
from fgclip.training.callbacks import (
    LossCurvePlot,
    MetricsLogger,
    SamplerEpochCallback,
    TemperatureClamp,
    integration_callbacks,
)
from fgclip.training.checkpoints import (
    DATA_FINGERPRINT_FILE,
    RUN_CONFIG_FILE,
    TRAINER_STATE_FILE,
    check_checkpoint_files,
    check_output_dir,
    check_resume_config,
    checkpoint_step,
    clear_output_dir,
    data_fingerprint,
    latest_checkpoint,
    promote,
    record_resume_changes,
    remove_stale_staging,
    saving,
    staging_path,
)
from fgclip.training.lock import OutputDirLock
from fgclip.training.lora import apply_lora, unwrap_model
from fgclip.training.nonfinite import NonFiniteGuard
from fgclip.training.preemption import (
    Preempted,
    PreemptionRequest,
    StopAndSave,
    describe_checkpoint,
    exit_at_deadline,
    handling_stop_signals,
    signal_name,
)
from fgclip.training.step_report import StepReport
from fgclip.training.trainer import FGCLIPTrainer

FINAL_MODEL_DIR = "model"


@dataclass
class TrainOutcome:
    output_dir: Path
    model_dir: Path
    model: FGCLIPModel
    tokenizer: PreTrainedTokenizerBase
    global_step: int


def train(config: ExperimentConfig, callbacks: list[TrainerCallback] | None = None) -> TrainOutcome:
    output_dir = Path(config.train.output_dir)
    checks.check_run_config(
        config
    )  # what `fgclip doctor` calls an error is refused before anything is written
    with OutputDirLock(output_dir) as lock:  # rank 0, before anything reads or writes the dir
        preemption = PreemptionRequest(
            config.train.signal_grace_s,
            f"continue with the same command plus --resume latest (output_dir {output_dir})",
            exit_at_deadline(lock.release),
            last_checkpoint=describe_checkpoint(output_dir),
        )
        with handling_stop_signals(preemption):  # SIGTERM / SIGUSR1 / SIGINT: save at the step end, exit
            return _train_locked(config, callbacks, output_dir, preemption)


def _train_locked(
    config: ExperimentConfig,
    callbacks: list[TrainerCallback] | None,
    output_dir: Path,
    preemption: PreemptionRequest,
) -> TrainOutcome:
    changes: list[str] = []
    resume = resolve_resume(config, changes)
    if not config.train.progress_bar:
        disable_progress_bar()  # HF's "Writing model shards" bars on every save
    set_seed(config.train.seed)  # the same initial model on every rank and in every run of this config
    tokenizer = builders.build_tokenizer(config.model)
    model, load_report = builders.build_model(config.model, tokenizer)
    task = builders.build_task(config, tokenizer)
    task.attach_bank(model)  # a new, empty bank; a resume then restores the checkpoint's into it
    if config.train.lora is not None:
        model = apply_lora(model, config.train.lora)
    core = unwrap_model(model)
    if is_rank_zero():
        print(describe_model(config.model, core, load_report, config.train.lora), flush=True)
    checks.check_model(core, tokenizer, config.data, config.loss)
    clips = builders.read_clips(config.data, _manifests(config), probe="training")  # every video probed
    checks.check_clips(config.data, clips)
    checks.check_leakage(config.data, clips)
    train_dataset = builders.build_dataset(
        config.data,
        clips,
        tokenizer,
        builders.model_image_size(core),
        train=True,
        class_names=builders.label_classes(config),
    )
    args = builders.training_arguments(config.train, config.data, config.loss)
    sampler = EpochTaggedSampler(builders.train_sampler(config, train_dataset, args.world_size))
    with args.main_process_first(local=False, desc="prepare the output dir"):
        if is_rank_zero():
            prepare_output_dir(config, output_dir / RUN_CONFIG_FILE, resume, changes)
    report = StepReport()
    trainer = FGCLIPTrainer(
        model=model,
        args=args,
        train_dataset=EpochSeededDataset(train_dataset, config.train.seed, config.data.max_failed_clips),
        data_collator=ClipCollator(CaptionTokenizer(tokenizer).pad_token_id),
        processing_class=tokenizer,
        task=task,
        step_report=report,
        group_rates=builders.group_rates(config.train),
        nonfinite_guard=NonFiniteGuard(output_dir, config.train.max_consecutive_nonfinite),
        train_sampler=sampler,
        run_config_file=effective_config_file(output_dir, resume),
        run_files=[output_dir / DATA_FINGERPRINT_FILE],
    )
    samples_per_step = (
        config.train.per_device_batch_size * config.train.gradient_accumulation_steps * args.world_size
    )
    bank_capacity = task.bank.capacity if task.bank is not None else None
    warmup = config.bank.warmup_steps if task.bank is not None else None
    metrics = MetricsLogger(
        report,
        output_dir,
        samples_per_step,
        bank_capacity,
        tensorboard="tensorboard" in config.train.report_to,
    )
    metrics.forward_to(integration_callbacks(trainer))  # train.report_to's trackers (HF built them)
    for callback in (
        SamplerEpochCallback(sampler),  # a resume inside epoch e replays epoch e's order
        metrics,
        LossCurvePlot(output_dir, warmup),
        TemperatureClamp(core),
        StopAndSave(preemption, args.device),
        *(callbacks or []),
    ):
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    if preemption.requested:
        raise preempted(preemption, output_dir, trainer.state.global_step)
    model_dir = save_final_model(trainer, output_dir / FINAL_MODEL_DIR)
    return TrainOutcome(output_dir, model_dir, core, tokenizer, trainer.state.global_step)


def preempted(preemption: PreemptionRequest, output_dir: Path, step: int) -> Preempted:
    """The one line after a signal: what was saved (the Trainer saved this step on the way out), how to go on."""
    preemption.cancel()
    seconds = time.monotonic() - preemption.received_at
    return Preempted(
        f"stopped by {signal_name(preemption.signum)} after optimizer step {step}: saved "
        f"{output_dir / f'checkpoint-{step}'} (weights, optimizer, schedule, memory bank, RNG, data position) "
        f"{seconds:.1f} s after the signal; {preemption.resume_hint}",
        preemption.signum,
    )


def _manifests(config: ExperimentConfig) -> list[str]:
    if not config.data.train_manifests:
        raise ConfigError("data: no manifests given (data.train_manifests)")
    return config.data.train_manifests


def resolve_resume(config: ExperimentConfig, changes: list[str] | None = None) -> Path | None:
    """The checkpoint to resume (numerically latest for "latest"), after the output-dir and settings checks;
    settings accepted with --resume-changed are appended to `changes`."""
    train = config.train
    check_output_dir(train.output_dir, train.resume, train.overwrite_output_dir)
    if train.resume is None:
        return None
    checkpoint = latest_checkpoint(train.output_dir) if train.resume == "latest" else Path(train.resume)
    if not (checkpoint / TRAINER_STATE_FILE).is_file():
        raise ConfigError(
            f"train.resume: {checkpoint} is not a complete checkpoint (no {TRAINER_STATE_FILE})"
        )
    accepted = check_resume_config(checkpoint, config)
    check_checkpoint_files(checkpoint, lora=config.train.lora is not None)
    if changes is not None:
        changes.extend(accepted)
    return checkpoint


def prepare_output_dir(
    config: ExperimentConfig, config_file: Path, resume: Path | None, changes: list[str] | None = None
) -> None:
    """Rank 0, before training: overwrite if asked, drop partial saves of a killed run, save the run's config and
    the data fingerprint. A resume never overwrites the run's original config: the settings it runs with go to
    `fgclip_config.resume-N.yaml` (and into its checkpoints), accepted changes to resume_changes.jsonl."""
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
    if changes:
        record_resume_changes(output_dir, resume, changes)
    if resume is None or not config_file.is_file():
        config.save(config_file)
    config.save(effective_config_file(output_dir, resume))
    fingerprint = json.dumps(data_fingerprint(config.data), indent=1)
    (output_dir / DATA_FINGERPRINT_FILE).write_text(fingerprint)


def effective_config_file(output_dir: Path, resume: Path | None) -> Path:
    """The config this process trains with: the run's own, or after a resume `fgclip_config.resume-N.yaml`."""
    if resume is None:
        return output_dir / RUN_CONFIG_FILE
    return output_dir / f"{Path(RUN_CONFIG_FILE).stem}.resume-{checkpoint_step(resume)}.yaml"


def save_final_model(trainer: FGCLIPTrainer, model_dir: Path) -> Path:
    """`OUTPUT_DIR/model`, written through the staging folder like every checkpoint."""
    staged = staging_path(model_dir)
    if is_rank_zero() and staged.exists():
        shutil.rmtree(staged)
    trainer.accelerator.wait_for_everyone()
    with saving(staged, "the final model"):  # a full disk names the folder
        trainer.save_model(str(staged))  # every rank: DeepSpeed gathers the weights collectively
    trainer.accelerator.wait_for_everyone()
    if is_rank_zero():
        promote(staged, model_dir)
    trainer.accelerator.wait_for_everyone()
    return model_dir


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
