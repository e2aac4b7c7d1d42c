"""Start-up checks shared by `fgclip train` and `fgclip eval` (which refuse) and `fgclip doctor` (which reports).

The run config's checks, the built model's checks, and the start-up video probe with its wording. Each check
raises `ConfigError` with a message naming the fields and values; the doctor turns the same exception into an
error finding, so the commands can never disagree about what is wrong.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from fgclip.config import TINY_KEYS, ConfigError, DataSection, ExperimentConfig, LossSection
from fgclip.data.errors import EntryProblem
from fgclip.data.formats import ManifestRead
from fgclip.data.leakage import LeakageReport, find_leakage
from fgclip.data.probe import MediaProbe, ProbeIndex, clip_problems, default_index_path, locate, probe_media
from fgclip.data.records import Clip
from fgclip.distributed import is_rank_zero
from fgclip.losses.heads import frozen_for_losses
from fgclip.losses.objective import loss_weights
from fgclip.losses.terms import bank_terms
from fgclip.model.modeling import FGCLIPModel
from fgclip.standin import STANDIN

BUILT_IN_INITS = ("tiny", "vit-b-32", STANDIN)  # model.init values that name no path


def enabled_losses(loss: LossSection) -> list[str]:
    return [name for name, weight in loss_weights(loss).items() if weight]


def bank_is_read(loss: LossSection) -> bool:
    """Whether an enabled loss term reads the memory bank (the table says which terms do)."""
    return any(term.name in enabled_losses(loss) for term in bank_terms())


def leakage(data: DataSection, clips: list[Clip]) -> LeakageReport | None:
    """The leakage report of training clips against `data.test_list` (None without a test list)."""
    if data.test_list is None:
        return None
    try:
        return find_leakage(clips, data.test_list)
    except (OSError, ValueError) as error:
        raise ConfigError(f"data.test_list: {error}") from error


def check_clips(data: DataSection, clips: list[Clip]) -> None:
    """No clips would "train" zero steps and save the initial model as if trained."""
    if not clips:
        raise ConfigError(
            f"data.train_manifests {data.train_manifests}: no clips to train on (no entries, or every one skipped)"
        )


def check_leakage(data: DataSection, clips: list[Clip]) -> LeakageReport | None:
    """Refuse (data.test_leakage=error) or loudly report (warn) training clips whose video is on the test list."""
    report = leakage(data, clips)
    if report is None:
        return None
    if report.leaked and data.test_leakage == "error":
        raise ConfigError(
            f"{report.summary()}\nRefusing to train on test videos: remove those entries, or set "
            "data.test_leakage: warn to train anyway."
        )
    if is_rank_zero():
        prefix = "[data] WARNING " if report.leaked else "[data] "
        print(f"{prefix}{report.summary()}", file=sys.stderr, flush=True)
    return report


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


def check_precision(model: FGCLIPModel) -> None:
    """Parameters train in fp32; bf16 is autocast only (DESIGN §4)."""
    wrong = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype != torch.float32})
    if wrong:
        raise ConfigError(
            f"trainable parameters in {wrong}: refusing to train. At these learning rates most bf16 updates round "
            "to zero, so the model would silently not learn. Keep parameters fp32 and use train.bf16: true "
            "(autocast) for speed."
        )


def check_heads_trainable(model: FGCLIPModel, loss: LossSection) -> None:
    """Refuse to train when a head or temperature an enabled loss needs is frozen (an accident, or say so).
    `model` is the bare FGCLIPModel (unwrap DDP / peft first)."""
    frozen = frozen_for_losses(model, enabled_losses(loss))
    if frozen:
        lines = [f"{name} (used by the {' and '.join(losses)} loss)" for name, losses in frozen.items()]
        raise ConfigError(
            "frozen parameters that enabled losses train:\n  "
            + "\n  ".join(lines)
            + "\nUnfreeze them, or set that loss's weight to 0 (loss.*_weight) if the loss is not wanted."
        )


def check_model(
    model: FGCLIPModel, tokenizer: PreTrainedTokenizerBase, data: DataSection, loss: LossSection
) -> None:
    """Every check of a built model that `fgclip train` runs before its first step."""
    check_tokenizer(model, tokenizer)
    check_caption_lengths(data, model)
    check_precision(model)
    check_heads_trainable(model, loss)


# ------------------------------------------------------------------------------------- the run config


def run_config_errors(config: ExperimentConfig) -> list[tuple[str, str]]:
    """(check, message) for each setting that makes a run meaningless: `fgclip train` refuses on any of them
    before step 1, and `fgclip doctor` lists them as errors (the same list, so the two never disagree)."""
    train, bank = config.train, config.bank
    errors = []
    if train.warmup_steps >= train.max_steps:
        errors.append(("lr.warmup", f"train.warmup_steps={train.warmup_steps} >= train.max_steps={train.max_steps}: "
                                    "the learning rate never reaches train.learning_rate"))  # fmt: skip
    if bank.size > 0 and bank_is_read(config.loss) and bank.warmup_steps >= train.max_steps:
        errors.append(("memory_bank.warmup", f"bank.warmup_steps={bank.warmup_steps} >= train.max_steps="
                       f"{train.max_steps} optimizer steps: the bank never switches on"))  # fmt: skip
    rates = {name: getattr(train, name) for name in ("learning_rate", "text_lr", "vision_lr", "head_lr",
                                                     "logit_scale_lr", "weight_decay")}  # fmt: skip
    negative = {name: value for name, value in rates.items() if value is not None and value < 0}
    if negative:
        shown = ", ".join(f"train.{name}={value}" for name, value in negative.items())
        errors.append(
            ("optimizer", f"{shown}: learning rates and weight decay must be >= 0 (the loss would rise)")
        )
    if train.deepspeed is not None and (problem := deepspeed_version_problem()) is not None:
        errors.append(("deepspeed", f"train.deepspeed={train.deepspeed}: {problem}"))
    unknown = sorted(set(config.model.tiny) - set(TINY_KEYS))
    if unknown:
        errors.append(("model.tiny", f"model.tiny: unknown key(s) {unknown}; known: {list(TINY_KEYS)}"))
    return errors


# DeepSpeed releases that cannot start an fgclip model. 0.19.8's engine broadcasts every parameter as a uint8
# view at start-up (`DeepSpeedEngine._broadcast_model`: `p.data.view(torch.uint8)`), which torch refuses for
# a 0-dim tensor ("self.dim() cannot be 0 to view BFloat16 as Byte"), and the three temperatures are 0-dim
# (as in FG-CLIP and HF CLIP checkpoints). 0.17.0, 0.18.0, 0.19.0, .4, .6 and .7 broadcast `p.data` itself
# (their sources read; 0.19.7 run).
BROKEN_DEEPSPEED = ("0.19.8",)


def deepspeed_version_problem() -> str | None:
    """Why the installed DeepSpeed cannot run fgclip, or None (also when it is not installed: the Trainer
    then says so itself)."""
    try:
        version = metadata.version("deepspeed")
    except metadata.PackageNotFoundError:
        return None
    if version in BROKEN_DEEPSPEED:
        return (
            f"DeepSpeed {version} cannot start a model with 0-dim parameters (its engine views each as uint8 "
            "to broadcast it) and fgclip's temperatures are 0-dim: install another version, e.g. "
            "pip install 'deepspeed==0.19.7' (the 'deepspeed' extra excludes it)"
        )
    return None


def missing_inputs(config: ExperimentConfig) -> list[tuple[str, str]]:
    """(field, message) for each input file or folder of a training run that does not exist, found before
    the model is built and the manifests are read (where each would otherwise stop the run in turn)."""
    data = config.data
    wanted = (
        [("model.init", config.model.init, "checkpoint")] if config.model.init not in BUILT_IN_INITS else []
    )
    if config.model.tokenizer not in (None, "synthetic"):
        wanted.append(("model.tokenizer", config.model.tokenizer, "folder"))
    wanted += [("data.train_manifests", path, "file") for path in data.train_manifests]
    wanted += [("data.eval_manifests", path, "file") for path in data.eval_manifests]
    wanted += [("data.hard_negatives", path, "file") for path in data.hard_negatives]
    wanted += [("data.test_list", path, "file") for path in [data.test_list] if path is not None]
    wanted.append(("data.video_root", data.video_root, "folder"))
    if data.frame_cache is not None:
        wanted.append(("data.frame_cache", data.frame_cache, "folder"))
    missing = []
    for name, path, kind in wanted:
        exists = Path(path).is_dir() if kind == "folder" else Path(path).exists()
        if not exists:
            missing.append((name, f"{name}: {kind} not found: {path}"))
    return missing


def check_run_config(config: ExperimentConfig) -> None:
    errors = run_config_errors(config) + missing_inputs(config)
    if errors:
        raise ConfigError("\n".join(message for _, message in errors))


# ------------------------------------------------------------------------------ the start-up video probe
# What train, eval and doctor say about the manifests they read and the videos they will decode, in the
# wording of `fgclip data check`: a refusal (data.invalid_entries: error) or a loud left-out (skip).


def summarised_clips(reads: list[ManifestRead]) -> list[Clip]:
    clips = []
    for result in reads:
        if is_rank_zero():
            print(read_summary(result), file=sys.stderr, flush=True)
        clips.extend(result.clips)
    return clips


def probe_index_path(data: DataSection) -> Path:
    return Path(data.video_probe_index) if data.video_probe_index else default_index_path()


def probe_clips(data: DataSection, clips: list[Clip], reads: list[ManifestRead], purpose: str) -> list[Clip]:
    """Probe every video of `clips` (header, duration vs spans and keyframes: the checks and wording of
    `fgclip data check`). Warnings are printed; clips with errors stop the run (`data.invalid_entries: error`,
    one line per video) or are left out and named (`skip`)."""
    problems = video_problems(data, clips, reads)
    errors = [p for p in problems if p.is_error]
    warnings = [p for p in problems if not p.is_error]
    if is_rank_zero() and warnings:
        print(
            _listed(f"[data] {len(warnings)} {purpose} video warning(s):", warnings),
            file=sys.stderr,
            flush=True,
        )
    if not errors:
        return clips
    if data.invalid_entries == "error":
        lines = _video_lines(errors)
        if len(lines) == 1:  # the whole error on the command's one line
            raise ConfigError(
                f"{lines[0]} ({purpose} video; data.invalid_entries=error: `skip` leaves it out)"
            )
        title = (
            f"{len(errors)} error(s) in the {purpose} videos (data.invalid_entries=error; `skip` leaves those "
            "clips out; `fgclip data check` reports the same):"
        )
        raise ConfigError("\n  ".join([title, *lines]))
    bad = {(p.file, p.index) for p in errors}
    kept = [c for c in clips if locate(c, reads) not in bad]
    if is_rank_zero():
        title = (
            f"[data] WARNING {len(clips) - len(kept)} of {len(clips)} {purpose} clips LEFT OUT for their videos "
            "(data.invalid_entries=skip):"
        )
        print("\n  ".join([title, *_video_lines(errors)]), file=sys.stderr, flush=True)
    if not kept:
        raise ConfigError(f"no {purpose} clip left: every one was left out for its video (see above)")
    return kept


def video_problems(
    data: DataSection,
    clips: list[Clip],
    reads: list[ManifestRead],
    probes: dict[Path, MediaProbe] | None = None,
) -> list[EntryProblem]:
    """The start-up probe's findings for `clips` (`data check`'s checks and wording), through the probe index
    (or `probes`, already probed). With a frame cache the videos are not checked: frames and durations come
    from the cache."""
    media = [c for c in clips if c.is_image or data.frame_cache is None]
    if not media:
        return []
    return clip_problems(media, reads, probes if probes is not None else probe_clip_media(data, media))


def probe_clip_media(data: DataSection, clips: list[Clip]) -> dict[Path, MediaProbe]:
    """Every distinct video's header (and image's readability) of `clips`, in parallel, through the index."""
    return probe_media(
        [c.video for c in clips if not c.is_image],
        images=[c.video for c in clips if c.is_image],
        index=ProbeIndex(probe_index_path(data)),
        workers=min(16, os.cpu_count() or 1),
    )


def _listed(title: str, problems, shown: int = 20) -> str:
    lines = [title] + [f"  {p}" for p in problems[:shown]]
    if len(problems) > shown:
        lines.append(f"  ... and {len(problems) - shown} more (`fgclip data check` lists all)")
    return "\n".join(lines)


def _video_lines(errors, shown: int = 20) -> list[str]:
    """One line per (video, problem) in `data check`'s wording, naming the entries that share it."""
    grouped: dict[tuple, list] = {}
    for p in errors:
        grouped.setdefault((p.file, p.video, p.field, p.message), []).append(p.index)
    lines = []
    for (file, video, field_name, message), entries in list(grouped.items())[:shown]:
        named = ", ".join(str(i) for i in entries[:5]) + (
            f" and {len(entries) - 5} more" if len(entries) > 5 else ""
        )
        lines.append(f"{file}, entr{'y' if len(entries) == 1 else 'ies'} {named}, video {video!r}, "
                     f"field {field_name!r}: {message}")  # fmt: skip
    if len(grouped) > shown:
        lines.append(f"... and {len(grouped) - shown} more (`fgclip data check` lists all)")
    return lines


def read_summary(result: ManifestRead, shown: int = 5) -> str:
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


def probe_test_videos(data: DataSection, videos: dict[str, Path]) -> dict[str, Path]:
    """The frame-level test videos, each header probed first: an unreadable one stops the evaluation before any
    video is scored (`data.invalid_entries: error`) or is left out of the AUC and named (`skip`)."""
    probes = probe_media(
        videos.values(), index=ProbeIndex(probe_index_path(data)), workers=min(16, os.cpu_count() or 1)
    )
    bad = {name: probes[path].error for name, path in videos.items() if probes[path].error is not None}
    if not bad:
        return videos
    lines = [f"  video {videos[name]}: {why}" for name, why in bad.items()]
    if data.invalid_entries == "error":
        raise ConfigError(
            "\n".join([f"{len(bad)} frame-level test video(s) cannot be read (data.invalid_entries=error; `skip` "
                       "leaves them out of the AUC):", *lines])
        )  # fmt: skip
    if is_rank_zero():
        title = f"[eval] WARNING {len(bad)} of {len(videos)} frame-level test videos LEFT OUT (unreadable):"
        print("\n".join([title, *lines]), file=sys.stderr, flush=True)
    kept = {name: path for name, path in videos.items() if name not in bad}
    if not kept:
        raise ConfigError("no frame-level test video left: every one is unreadable (see above)")
    return kept
