"""`fgclip doctor CONFIG`: static checks of a training config (and its data) before hours of training.

Each finding has a severity (error / warning / info) and the numbers behind it. Errors are what would make
the run meaningless or fail (a bank that never switches on, frozen heads, fp16/bf16 parameters, test videos
in the training set, an output dir `fgclip train` would refuse); warnings are what usually wastes the run.
Nothing is trained; the model is built once (as `fgclip train` builds it) to read its heads and dtypes.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass

from fgclip.checks import bank_is_read
from fgclip.config import ConfigError, ExperimentConfig
from fgclip.data.records import Clip
from fgclip.losses.heads import frozen_for_losses
from fgclip.losses.objective import loss_weights
from fgclip.losses.terms import bank_terms

SEVERITIES = ("error", "warning", "info")
FEW_NEGATIVES = 32  # fewer negatives per region query make the region loss noisy (the failed run had ~7)
# benchmarks/ablation.py, README "Does each part pay off?" (issue 24): stand-in fine-tuning at batch 4 x
# accumulation 8, 60 steps, weights 0.3, temperatures from the global one, 5 seeds, 208 test videos; the bank
# {size: 128, warmup_steps: 8, fresh_text: 32} against the same recipe without it, paired 95% t-intervals.
SMALL_BATCH_EVIDENCE = (
    "Measured at batch 4 x accumulation 8 (README ablation, 5 seeds): bank {size: 128, warmup_steps: 8, "
    "fresh_text: 32} vs off gives region R@1 +0.078 [+0.047, +0.109] text->region and +0.104 [+0.065, +0.142] "
    "region->text, hard-negative accuracy +0.097 [+0.063, +0.132], but zero-shot frame AUC -0.040 [-0.053, "
    "-0.026] and AP -0.043 [-0.059, -0.026]: turn it on for region retrieval, leave it off for zero-shot "
    "detection"
)


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" | "warning" | "info"
    check: str
    message: str


@dataclass(frozen=True)
class DataSummary:
    """What the data checks read from the training manifests."""

    clips: list[Clip]  # those whose videos the start-up probe accepts
    regions_per_clip: float  # mean regions a clip contributes (capped at data.max_regions)
    probes: dict  # video path -> MediaProbe (header, or why it failed)


def run_doctor(config: ExperimentConfig, world_size: int = 1, read_data: bool = True) -> list[Finding]:
    findings: list[Finding] = []
    findings += check_output_dir(config)
    findings += check_schedule(config)
    data = None
    if read_data:
        findings += check_inputs_exist(config)
        data, data_findings = read_training_data(config)
        findings += data_findings
    findings += check_memory_bank(config, world_size, data)
    findings += check_negatives(config, world_size, data)
    findings += check_accumulation(config, world_size)
    findings += check_model(config)
    if data is not None:
        findings += check_leakage(config, data.clips)
        findings += check_frames_per_clip(config, data)
        findings += check_caption_lengths(config, data.clips)
        findings += check_epochs(config, world_size, len(data.clips))
    order = {severity: i for i, severity in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: order[f.severity])


def format_findings(findings: list[Finding], as_json: bool = False) -> str:
    if as_json:
        return json.dumps([asdict(f) for f in findings], indent=2)
    width = max((len(f.check) for f in findings), default=0)
    lines = [f"{f.severity.upper():<7}  {f.check:<{width}}  {f.message}" for f in findings]
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    lines.append(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ checks
def check_output_dir(config: ExperimentConfig) -> list[Finding]:
    from fgclip.training.checkpoints import check_output_dir as refuse_existing_run

    try:
        refuse_existing_run(config.train.output_dir, config.train.resume, config.train.overwrite_output_dir)
    except ConfigError as error:
        return [Finding("error", "output_dir", str(error))]
    return []


def check_schedule(config: ExperimentConfig) -> list[Finding]:
    from fgclip.checks import run_config_errors

    train = config.train
    findings = [Finding("error", check, message) for check, message in run_config_errors(config)]
    if train.save_steps > train.max_steps:
        findings.append(
            Finding(
                "info",
                "checkpoints",
                f"train.save_steps={train.save_steps} > train.max_steps={train.max_steps}: no checkpoint before the "
                "end, so a crash loses the whole run (only OUTPUT_DIR/model is written at the end)",
            )
        )
    return findings


def check_inputs_exist(config: ExperimentConfig) -> list[Finding]:
    """The input files and folders `fgclip train` refuses to start without (`fgclip.checks.missing_inputs`)."""
    from fgclip.checks import missing_inputs

    return [Finding("error", name, message) for name, message in missing_inputs(config)]


def check_memory_bank(config: ExperimentConfig, world_size: int, data: DataSummary | None) -> list[Finding]:
    bank, train = config.bank, config.train
    size, warmup = bank.size, bank.warmup_steps
    if size == 0:
        return [Finding("info", "memory_bank", "bank.size=0: the region loss uses in-batch negatives only")]
    if not bank_is_read(config.loss):
        fields = ", ".join(f"loss.{term.weight_field}=0" for term in bank_terms())
        served = " and ".join(term.name for term in bank_terms())
        return [
            Finding("info", "memory_bank", f"{fields}: the bank feeds nothing (it serves the {served} loss)")
        ]
    findings = []  # a bank that never switches on is an error of fgclip.checks.run_config_errors
    if train.max_steps / 2 < warmup < train.max_steps:
        findings.append(
            Finding(
                "warning",
                "memory_bank.warmup",
                f"bank.warmup_steps={warmup} of train.max_steps={train.max_steps}: the bank serves only the "
                f"last {train.max_steps - warmup} steps ({(train.max_steps - warmup) / train.max_steps:.0%})",
            )
        )
    rows_per_step = _regions_per_step(config, world_size, data)
    fill_steps = math.ceil(size / rows_per_step)
    message = (
        f"capacity {size}, switches on at optimizer step {warmup} of {train.max_steps}; ~{rows_per_step:.0f} "
        f"region rows written per step -> full after {fill_steps} step(s) of writing"
    )
    if not bank.fill_during_warmup:
        message += " (filling starts at switch-on)"
    findings.append(Finding("info", "memory_bank", message))
    max_age = bank.max_age
    if max_age is not None and max_age * rows_per_step < size:
        findings.append(
            Finding(
                "warning",
                "memory_bank.max_age",
                f"bank.max_age={max_age} steps x ~{rows_per_step:.0f} rows/step = {max_age * rows_per_step:.0f} "
                f"usable entries < capacity {size}: entries expire before the bank fills",
            )
        )
    return findings


def check_negatives(config: ExperimentConfig, world_size: int, data: DataSummary | None) -> list[Finding]:
    findings = []
    batch = config.train.per_device_batch_size * world_size
    weights = loss_weights(config.loss)  # the negatives of the clip-level and the region-level terms
    if weights["global"]:
        severity = "warning" if batch - 1 < 8 else "info"
        findings.append(
            Finding(
                severity,
                "negatives.global",
                f"{batch - 1} negatives per clip query (per_device_batch_size {config.train.per_device_batch_size} "
                f"x world size {world_size} - 1)",
            )
        )
    if weights["region"]:
        in_batch = _regions_per_step(config, world_size, data) / config.train.gradient_accumulation_steps - 1
        bank = config.bank.size
        if config.bank.warmup_steps >= config.train.max_steps:
            bank = 0  # it never switches on
        elif config.bank.max_age is not None:
            bank = min(bank, config.bank.max_age * _regions_per_step(config, world_size, data))
        total = in_batch + bank
        fresh = min(config.bank.fresh_text, bank)  # re-encoded by the current text tower at every step
        source = "mean regions/clip from the data" if data is not None else "data.max_regions (upper bound)"
        message = (
            f"~{total:.0f} negatives per region query once the bank is full: batch {config.train.per_device_batch_size} "
            f"x {_regions_per_clip(config, data):.2f} regions/clip ({source}) x world size {world_size} - 1 = "
            f"{in_batch:.0f} in-batch + {fresh:.0f} fresh text (bank.fresh_text) + {bank - fresh:.0f} banked "
            f"(stored embeddings{_image_side(config)}) (before masking same-caption duplicates)"
        )
        severity = "warning" if total < FEW_NEGATIVES else "info"
        if severity == "warning":
            message += (
                f"; fewer than {FEW_NEGATIVES} makes the region loss noisy: raise the batch or the bank. "
                + SMALL_BATCH_EVIDENCE
            )
        findings.append(Finding(severity, "negatives.region", message))
    return findings


def check_accumulation(config: ExperimentConfig, world_size: int) -> list[Finding]:
    train = config.train
    effective = train.per_device_batch_size * train.gradient_accumulation_steps * world_size
    message = (
        f"{effective} clips per optimizer step = per_device_batch_size {train.per_device_batch_size} x "
        f"gradient_accumulation_steps {train.gradient_accumulation_steps} x world size {world_size}"
    )
    if train.gradient_accumulation_steps > 1:
        return [
            Finding(
                "warning",
                "accumulation",
                message + f"; accumulation averages gradients of separate contrastive batches of "
                f"{train.per_device_batch_size * world_size} clips: it does not add negatives (the memory bank does)",
            )
        ]
    return [Finding("info", "accumulation", message)]


def check_model(config: ExperimentConfig) -> list[Finding]:
    """Build the model as `fgclip train` does and run train's own checks of it (`fgclip.checks`), plus the
    temperature report."""
    import torch

    from fgclip import builders, checks
    from fgclip.model.errors import CheckpointError
    from fgclip.training.lora import apply_lora, unwrap_model

    try:
        tokenizer = builders.build_tokenizer(config.model)
        model, report = builders.build_model(config.model, tokenizer)
    except (ConfigError, CheckpointError, FileNotFoundError, OSError) as error:
        return [Finding("error", "model", f"the model cannot be built: {error}")]
    if config.train.lora is not None:
        model = unwrap_model(apply_lora(model, config.train.lora))
    findings = []
    if report is not None and report.random_init:
        findings.append(
            Finding(
                "warning",
                "model",
                f"model.init={config.model.init} is a config without weights: training starts from RANDOM init",
            )
        )
    if report is not None and report.cast_to_fp32:
        findings.append(
            Finding("info", "precision", f"checkpoint weights cast to fp32 on load: {report.cast_to_fp32}")
        )
    wrong = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            wrong.setdefault(str(parameter.dtype), []).append(name)
    for dtype, names in wrong.items():
        findings.append(
            Finding(
                "error",
                "precision",
                f"{len(names)} trainable parameters in {dtype} (e.g. {names[0]}): updates at these learning rates "
                "round to zero; keep fp32 parameters and use train.bf16 (autocast)",
            )
        )
    for name, losses in frozen_for_losses(model, checks.enabled_losses(config.loss)).items():
        findings.append(
            Finding(
                "error", "heads.frozen", f"{name} is frozen but the {' and '.join(losses)} loss trains it"
            )
        )
    for name, check in (
        ("tokenizer", lambda: checks.check_tokenizer(model, tokenizer)),
        ("captions", lambda: checks.check_caption_lengths(config.data, model)),
    ):
        try:
            check()
        except ConfigError as error:
            findings.append(Finding("error", name, str(error)))
    findings += _temperature_findings(model)
    return findings


def _temperature_findings(model) -> list[Finding]:
    ceiling = model.config.logit_scale_max
    values = {name: float(scale.detach()) for name, scale in model.logit_scales().items()}
    shown = ", ".join(f"{name} {value:.4f} (x{math.exp(value):.1f})" for name, value in values.items())
    findings = [
        Finding(
            "info",
            "temperatures",
            f"{shown}; ceiling logit_scale_max {ceiling:.4f} (x{math.exp(ceiling):.1f})",
        )
    ]
    above = [name for name, value in values.items() if value > ceiling + 1e-6]
    if above:
        findings.append(
            Finding(
                "warning",
                "temperatures",
                f"{', '.join(above)} start above logit_scale_max={ceiling:.4f}: the losses use the ceiling from the "
                "first step (clamped in the forward) and the weights are clamped after it",
            )
        )
    low = [name for name, value in values.items() if math.exp(value) < 10]
    if low:
        findings.append(
            Finding(
                "warning",
                "temperatures",
                f"{', '.join(low)} start below x10: cosine similarities in [-1, 1] then give near-uniform softmaxes",
            )
        )
    return findings


# -------------------------------------------------------------------------------------------- data checks
def read_training_data(config: ExperimentConfig) -> tuple[DataSummary | None, list[Finding]]:
    """The training clips, with every video probed as `fgclip train` probes it at start (same checks, same
    index): the errors train would stop on (or skip) are errors here."""
    from fgclip.builders import data_options
    from fgclip.checks import probe_clip_media, summarised_clips, video_problems
    from fgclip.data.errors import ManifestError
    from fgclip.data.formats import read_manifests
    from fgclip.data.probe import locate

    if not config.data.train_manifests:
        return None, [Finding("error", "data", "data.train_manifests is empty")]
    try:
        reads = read_manifests(config.data.train_manifests, data_options(config.data))
    except (ManifestError, FileNotFoundError, ValueError) as error:
        return None, [Finding("error", "data", f"the training manifests cannot be read: {error}")]
    clips = summarised_clips(reads)
    probes = probe_clip_media(config.data, clips)  # every header: the frames check reads durations
    problems = video_problems(config.data, clips, reads, probes)
    findings = _video_findings(config, problems, len(clips))
    regions = [min(len(c.regions), config.data.max_regions) for c in clips]
    mean_regions = statistics.fmean(regions) if regions else 0.0
    dropped = sum(max(len(c.regions) - config.data.max_regions, 0) for c in clips)
    findings.append(
        Finding(
            "info",
            "data",
            f"{len(clips)} training clips ({sum(c.is_abnormal for c in clips)} abnormal) from "
            f"{len(config.data.train_manifests)} manifest(s); {mean_regions:.2f} regions/clip"
            + (
                f"; {dropped} regions beyond data.max_regions={config.data.max_regions} are dropped"
                if dropped
                else ""
            ),
        )
    )
    unusable = {(p.file, p.index) for p in problems if p.is_error}
    usable = [c for c in clips if probes[c.video].error is None and locate(c, reads) not in unusable]
    return DataSummary(usable, mean_regions, probes), findings


def _video_findings(config: ExperimentConfig, problems, num_clips: int) -> list[Finding]:
    """The start-up probe's problems as findings: errors stop `fgclip train` (or, with
    `data.invalid_entries: skip`, leave their clips out: a warning here)."""
    errors = [p for p in problems if p.is_error]
    warnings = [p for p in problems if not p.is_error]
    findings = []
    if errors:
        skip = config.data.invalid_entries == "skip"
        findings.append(
            Finding(
                "warning" if skip else "error",
                "data.videos",
                f"{len(errors)} of {num_clips} training clips have unusable videos"
                + (" (left out: data.invalid_entries=skip)" if skip else "")
                + f", e.g. {errors[0]}",
            )
        )
    if warnings:
        findings.append(
            Finding("warning", "data.videos", f"{len(warnings)} video warning(s), e.g. {warnings[0]}")
        )
    if not problems:
        findings.append(
            Finding("info", "data.videos", f"every video of the {num_clips} training clips probed")
        )
    return findings


def check_leakage(config: ExperimentConfig, clips: list[Clip]) -> list[Finding]:
    """The leakage report `fgclip train` refuses on (`fgclip.checks.leakage`: the same test-list reading)."""
    from fgclip.checks import leakage

    test_list = config.data.test_list
    if test_list is None:
        return [
            Finding(
                "warning",
                "leakage",
                "data.test_list is not set: training data is not checked against the test videos",
            )
        ]
    try:
        report = leakage(config.data, clips)
    except ConfigError as error:
        return [Finding("error", "leakage", str(error))]
    if report.leaked:
        severity = "error" if config.data.test_leakage == "error" else "warning"
        videos = sorted(report.clips_by_video)
        entries = sum(len(c) for c in report.clips_by_video.values())
        return [
            Finding(
                severity,
                "leakage",
                f"{entries} training clip(s) from {len(videos)} test video(s) of {test_list}: "
                f"{', '.join(videos[:5])}" + (", ..." if len(videos) > 5 else ""),
            )
        ]
    return [Finding("info", "leakage", f"no training video is on the test list ({test_list})")]


def check_frames_per_clip(config: ExperimentConfig, data: DataSummary) -> list[Finding]:
    """Frames sampled per clip vs the native frames in each clip's span: fewer native frames repeat frames."""
    from fgclip.builders import sampling_options
    from fgclip.data.dataset import clip_span

    options = sampling_options(config.data, image_size=config.data.image_size or 224)  # spans only
    num_frames = config.data.num_frames
    spans, short, broken = [], [], []
    for clip in data.clips:
        info = data.probes[clip.video].info
        if info is None:  # an image
            continue
        try:
            start, end = clip_span(clip, info.duration_s, options)
        except ValueError as error:
            broken.append(f"{clip.sample_id}: {error}")
            continue
        spans.append(end - start)
        if (end - start) * info.fps < num_frames:
            short.append((clip, (end - start) * info.fps))
    findings = []
    if broken:
        findings.append(Finding("error", "frames", f"{len(broken)} clip span(s) unusable, e.g. {broken[0]}"))
    if spans:
        findings.append(
            Finding(
                "info",
                "frames",
                f"{num_frames} frames per clip from spans of {min(spans):.2f} / {statistics.median(spans):.2f} / "
                f"{max(spans):.2f} s (min / median / max): one frame every {statistics.median(spans) / num_frames:.2f} s "
                "at the median",
            )
        )
    if short:
        clip, native = min(short, key=lambda item: item[1])
        findings.append(
            Finding(
                "warning",
                "frames",
                f"{len(short)} of {len(spans)} clips have fewer native frames in their span than data.num_frames="
                f"{num_frames} (frames repeat), e.g. {clip.sample_id} with {native:.0f}",
            )
        )
    return findings


def check_caption_lengths(config: ExperimentConfig, clips: list[Clip]) -> list[Finding]:
    """Caption lengths in the model's own tokens; a warning for each kind with captions its length would cut.

    Region and hard-negative captions go through CLIP's short (77) position table, global captions through
    the long one; `data.*caption_max_length` truncates them (EOS kept), silently at training time.
    """
    from fgclip.builders import build_tokenizer
    from fgclip.data.text import clip_caption_lengths

    try:
        tokenizer = build_tokenizer(config.model)
    except (ConfigError, FileNotFoundError, OSError):
        return []  # check_model reports why the tokenizer cannot be built
    data = config.data
    findings = []
    summaries = clip_caption_lengths(
        tokenizer, clips, data.caption_max_length, data.global_caption_max_length
    )
    for summary in summaries:
        if not summary.count:
            continue
        findings.append(Finding("info", "captions", summary.describe()))
        if summary.over():
            findings.append(
                Finding(
                    "warning",
                    "captions",
                    f"{summary.over()} of {summary.count} {summary.kind} captions are longer than {summary.limit} "
                    f"tokens (the longest {summary.longest}) and are cut to {summary.limit}"
                    + (" by the short (77-position) table" if summary.kind != "global" else ""),
                )
            )
        elif summary.kind == "global" and summary.over(data.caption_max_length):
            findings.append(
                Finding(
                    "info",
                    "captions",
                    f"{summary.over(data.caption_max_length)} global captions are longer than the short table's "
                    f"{data.caption_max_length} tokens: they rely on the long table ({summary.limit})",
                )
            )
    return findings


def check_epochs(config: ExperimentConfig, world_size: int, num_clips: int) -> list[Finding]:
    train = config.train
    per_step = train.per_device_batch_size * train.gradient_accumulation_steps * world_size
    if num_clips < train.per_device_batch_size * world_size:
        return [
            Finding(
                "warning",
                "data.size",
                f"{num_clips} training clips < one batch of per_device_batch_size {train.per_device_batch_size} x "
                f"world size {world_size}: every step sees the same {num_clips} clips and fewer negatives than "
                "computed here",
            )
        ]
    steps_per_epoch = math.ceil(num_clips / per_step)  # the last, partial batch is kept (no drop_last)
    return [
        Finding(
            "info",
            "data.size",
            f"~{steps_per_epoch} optimizer step(s) per epoch ({num_clips} clips / {per_step} per step); "
            f"train.max_steps={train.max_steps} is ~{train.max_steps / steps_per_epoch:.1f} epochs",
        )
    ]


# --------------------------------------------------------------------------------------------- helpers
def _image_side(config: ExperimentConfig) -> str:
    momentum = config.bank.momentum
    if momentum is None:
        return ""
    return (
        f"; image side from the EMA encoder, bank.momentum={momentum}: ~{1 / (1 - momentum):.0f}-step average"
    )


def _regions_per_clip(config: ExperimentConfig, data: DataSummary | None) -> float:
    return data.regions_per_clip if data is not None else float(config.data.max_regions)


def _regions_per_step(config: ExperimentConfig, world_size: int, data: DataSummary | None) -> float:
    train = config.train
    clips = train.per_device_batch_size * train.gradient_accumulation_steps * world_size
    return max(clips * _regions_per_clip(config, data), 1.0)
