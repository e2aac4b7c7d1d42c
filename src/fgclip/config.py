"""Experiment configuration: typed dataclasses, YAML files, `--key value` overrides. Unknown keys are errors.

A config has six sections — model, data, loss, bank, train, eval. Model hyperparameters that travel with
the checkpoint (temporal module, temperatures) are `FGCLIPConfig` fields and are given in the `model`
section under their own names. The loss section has one `<term>_weight` per loss term of
`fgclip.losses.terms.LOSS_TERMS`; the bank section is `fgclip.losses.memory_bank.MemoryBankOptions`.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub.errors import StrictDataclassError

from fgclip.evaluation.snippet_options import SnippetOptions
from fgclip.losses.memory_bank import MemoryBankOptions
from fgclip.losses.terms import LOSS_TERMS
from fgclip.model.configuration import FGCLIPConfig, tiny_config


class ConfigError(ValueError):
    pass


# FGCLIPConfig fields a user may set in the `model` section (the CLIP architecture comes from `init`).
MODEL_OPTIONS = (
    "logit_scale_init_value",
    "logit_scale_max",
    "temporal_num_layers",
    "temporal_num_heads",
    "max_frames",
    "region_pooling",
    "long_text_max_positions",
    "long_text_keep_positions",
    "region_stop_gradient",
)
# Smallest valid value of the numeric model options (0 temporal layers: frame embeddings pooled directly)
MODEL_OPTION_MINIMA = {"temporal_num_layers": 0, "temporal_num_heads": 1, "max_frames": 1,
                       "long_text_max_positions": 1, "long_text_keep_positions": 1}  # fmt: skip
# `model.tiny` keys: the arguments of `tiny_config` that shape the architecture (all positive integers)
TINY_KEYS = ("image_size", "patch_size", "vision_width", "vision_layers", "text_width", "text_layers", "heads",
             "projection_dim", "max_positions")  # fmt: skip
_TINY_DEFAULTS = {
    name: p.default for name, p in inspect.signature(tiny_config).parameters.items() if name in TINY_KEYS
}
# fgclip.model.loading.FINE_TEMPERATURE_RULES, repeated so that reading a config imports no model code
FINE_TEMPERATURE_RULES = ("checkpoint", "global", "init_value")
# HF schedulers that run with no lr_scheduler_kwargs and no evaluation metric (the others fail at step 1)
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt")  # fmt: skip
# Run configs written before the `bank` section kept the bank options in `model` (old checkpoints carry them).
LEGACY_BANK_KEYS = {f"memory_bank_{f.name}": f.name for f in dataclasses.fields(MemoryBankOptions)}
LEGACY_BANK_KEYS["memory_bank_size"] = "size"


@dataclass
class ModelSection:
    # "tiny", "vit-b-32" (random init), a local checkpoint path, or a config.json (random init of its architecture)
    init: str = "tiny"
    tokenizer: str | None = None  # a tokenizer directory; default: the checkpoint's own
    allow_partial_load: bool = False  # opt out of the missing-backbone-weight error, deliberately
    tiny: dict[str, Any] = field(default_factory=dict)  # overrides of `tiny_config` (widths, layers, ...)
    options: dict[str, Any] = field(default_factory=dict)  # FGCLIPConfig fields, see MODEL_OPTIONS
    # region / hard-negative temperatures of a new run: "checkpoint" (as loaded; logit_scale_init_value = ln 100
    # where the checkpoint lacks them), "global" (the checkpoint's own global logit_scale) or "init_value"
    # (logit_scale_init_value); fgclip.model.loading.init_fine_temperatures
    init_fine_temperatures: str = "checkpoint"


@dataclass
class DataSection:
    train_manifests: list[str] = field(default_factory=list)
    eval_manifests: list[str] = field(default_factory=list)
    hard_negatives: list[str] = field(default_factory=list)
    video_root: str = "."
    path_remaps: dict[str, str] = field(default_factory=dict)  # manifest prefix -> local prefix
    test_list: str | None = None  # videos that must not be trained on (e.g. UCF-Crime Anomaly_Test.txt)
    test_leakage: str = "error"  # "error": refuse to train on test-list videos; "warn": report them loudly
    annotation_fps: float = 25.0  # grid of keyframe `frame` numbers, for manifests that do not declare one
    manifest_annotation_fps: dict[str, float] = field(default_factory=dict)  # manifest path -> its grid
    invalid_entries: str = "error"  # "error": a bad manifest entry stops training; "skip": left out, listed
    box_tolerance: float = 0.02  # box coordinates outside [0, 1] by less than this are clipped
    open_track_end: str = "video_end"  # Label Studio tracks ending on an enabled keyframe: or "last_keyframe"
    # Label Studio: the task `data` field holding the global caption (default: caption, else category)
    labelstudio_caption_field: str | None = None
    normal_dict_video_prefix: str = (
        ""  # legacy normal-clip dicts (format 3): prepended to their bare video names
    )
    image_caption_field: str = "caption"  # image records (format 6): "caption" or "short_caption"
    num_frames: int = 8
    image_size: int | None = None  # default: the model's
    max_regions: int = 4
    max_hard_negatives: int = 10
    context_s: float = 2.0
    single_keyframe_hold_s: float = 0.5
    caption_max_length: int = 77  # region and hard-negative captions (CLIP's 77-position table)
    global_caption_max_length: int = 248  # global captions (FG-CLIP's long position table)
    num_workers: int = 0
    batch_by_group: bool = False  # keep clips of one manifest `group` (scene) in the same batch
    balance: bool = False  # every batch half normal, half abnormal clips (the smaller class oversampled)
    frame_cache: str | None = None  # a `fgclip data cache` folder: frames come from it, never decoded
    # start-up video probe results, keyed by (path, size, mtime); None: $FGCLIP_CACHE_DIR/video_probe.json,
    # else ~/.cache/fgclip/video_probe.json
    video_probe_index: str | None = None
    max_failed_clips: int = 10  # clips whose decoding fails mid-run (each replaced) before training stops


def loss_section_class(terms) -> type:
    """`loss.<term>_weight` for every term of a loss-term table, and each term's own options
    (`loss.<option>`), so a new term needs no edit here."""
    weights = [(term.weight_field, float, field(default=term.default_weight)) for term in terms]
    options = [(o.field, o.type, field(default=o.default)) for term in terms for o in term.options]
    section = dataclasses.make_dataclass("LossSection", weights + options)
    section.__doc__ = "Weight of each loss term (0 turns it off; fgclip.losses.terms.LOSS_TERMS)."
    return section


LossSection = loss_section_class(LOSS_TERMS)


# CLIP encoder-layer submodules LoRA can adapt: attention (q/k/v/out) and MLP (fc1/fc2).
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


@dataclass
class LoraSection:
    """LoRA adapters (peft) on the towers' encoder layers; heads, temporal module and temperatures train fully."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LORA_MODULES))
    towers: list[str] = field(default_factory=lambda: ["text", "vision"])


@dataclass
class TrainSection:
    output_dir: str = "runs/fgclip"
    max_steps: int = 1000  # optimizer steps
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-5  # default for every group without its own rate
    text_lr: float | None = None
    vision_lr: float | None = None
    head_lr: float | None = None
    logit_scale_lr: float | None = None
    weight_decay: float = 0.1
    warmup_steps: int = 0
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 3
    seed: int = 42
    bf16: bool = False  # autocast only; parameters stay fp32
    gradient_checkpointing: bool = False
    deepspeed: str | None = None
    resume: str | None = None  # "latest" or a checkpoint directory
    resume_changed: bool = False  # accept a resume whose order / trajectory settings or data changed (logged)
    overwrite_output_dir: bool = False  # remove an earlier run's checkpoints, metrics and model first
    progress_bar: bool = True
    # experiment trackers, HF Trainer integration names: "tensorboard" is fgclip's own writer (RUN/tensorboard),
    # the others ("wandb", "mlflow", ...) are HF's callbacks fed every optimizer step's metrics.jsonl row;
    # [] for none. metrics.jsonl is written whatever this says.
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    max_consecutive_nonfinite: int = (
        5  # stop after this many optimizer steps in a row skipped for a NaN/inf loss
    )
    lora: LoraSection | None = None  # `lora: {}` turns LoRA on with the defaults
    # SIGTERM / SIGUSR1 / SIGINT: finish the step and save within this many seconds, else exit without saving.
    # 25 s fits inside the usual grace before SIGKILL (Kubernetes 30 s, SLURM KillWait 30 s, torchrun 30 s).
    signal_grace_s: float = 25.0


def evaluator_names() -> list[str]:
    """The registered evaluators (`fgclip.evaluation.evaluators`), imported when a config needs them."""
    from fgclip.evaluation.evaluators import EVALUATORS

    return list(EVALUATORS)


SNIPPET_POOLINGS = ("frame", "snippet", "window")  # fgclip.evaluation.pooling.SNIPPET_POOLINGS


@dataclass
class EvalSection:
    evaluators: list[str] = field(default_factory=evaluator_names)  # run those whose inputs are given
    prompts: str | None = None  # JSON {"normal": [...], "anomaly": {class: [...]}}
    temporal_annotations: str | None = None  # UCF-Crime-style ground truth for frame-level AUC
    # localization's twin control: JSON {normal video stem: abnormal video stem}, or a synthetic benchmark's
    # meta.json (its "twins"); the normal twins must be among the eval clips
    twins: str | None = None
    snippet_frames: int = SnippetOptions.snippet_frames
    frames_per_snippet: int = SnippetOptions.frames_per_snippet
    batch_size: int = 16
    # zero-shot snippet scores from: "frame" (each frame alone), "snippet" (its frames pooled) or "window"
    # (data.num_frames frames over window_s seconds around it pooled); fgclip.evaluation.pooling
    snippet_pooling: str = "snippet"
    window_s: float = 3.0


@dataclass
class ExperimentConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    bank: MemoryBankOptions = field(default_factory=MemoryBankOptions)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def to_dict(self) -> dict:
        result = dataclasses.asdict(self)
        options = result["model"].pop("options")
        result["model"].update(options)
        return result

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config (or the defaults) and apply `--key value` overrides, validating every key."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        raw = _read_yaml(path)
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    for dotted, value in parse_overrides(overrides or []):
        section, key = _resolve_key(dotted)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"section {section!r} must be a mapping")
        raw[section][key] = value
    config = _build(raw, str(path) if path else "<defaults>")
    check_config(config)
    return config


def _read_yaml(path: Path) -> Any:
    """The file's YAML; a syntax error names the file, line and column (not `<unicode string>`)."""
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None


def parse_overrides(argv: list[str]) -> list[tuple[str, Any]]:
    """`--train.max_steps 200 --bf16 true` -> [("train.max_steps", 200), ("bf16", True)] (values parsed as YAML)."""
    pairs, i = [], 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            raise ConfigError(f"expected --key value, got {token!r}")
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 2
        else:
            value, i = "true", i + 1  # a bare flag
        pairs.append((key.replace("-", "_"), _override_value(key, value)))
    return pairs


def _override_value(key: str, value: str) -> Any:
    """The YAML value of `--key value`; a syntax error names the option and the text."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(
            f"--{key} {value!r}: YAML syntax error: {problem} (quote the value, e.g. --{key} '{{rank: 8}}')"
        ) from None


_SECTIONS = {
    "model": ModelSection,
    "data": DataSection,
    "loss": LossSection,
    "bank": MemoryBankOptions,
    "train": TrainSection,
    "eval": EvalSection,
}


def _section_keys(section: str) -> set[str]:
    keys = {f.name for f in dataclasses.fields(_SECTIONS[section])}
    if section == "model":
        keys = (keys - {"options"}) | set(MODEL_OPTIONS) | set(LEGACY_BANK_KEYS)
    return keys


def _resolve_key(dotted: str) -> tuple[str, str]:
    if "." in dotted:
        section, key = dotted.split(".", 1)
        if section not in _SECTIONS:
            raise ConfigError(
                f"unknown config section {section!r} in --{dotted} (sections: {', '.join(_SECTIONS)})"
            )
        if key not in _section_keys(section):
            raise ConfigError(_unknown(key, section))
        return section, key
    owners = [s for s in _SECTIONS if dotted in _section_keys(s)]
    if len(owners) == 1:
        return owners[0], dotted
    if not owners:
        every = set().union(*(_section_keys(s) for s in _SECTIONS))
        hint = difflib.get_close_matches(dotted, every, n=1)
        raise ConfigError(
            f"unknown config key --{dotted}" + (f" (did you mean --{hint[0]}?)" if hint else "")
        )
    raise ConfigError(
        f"--{dotted} is ambiguous; write one of " + ", ".join(f"--{s}.{dotted}" for s in owners)
    )


def _unknown(key: str, section: str) -> str:
    hint = difflib.get_close_matches(key, _section_keys(section), n=1)
    return f"unknown key {key!r} in section {section!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")


def move_legacy_bank_keys(raw: dict, source: str = "the config") -> None:
    """`model.memory_bank_size: 32` (before the bank section existed) -> `bank.size: 32`. Both given (a legacy
    override on a config with a bank section) is refused: neither may silently win."""
    model = raw.get("model") or {}
    for old, new in LEGACY_BANK_KEYS.items():
        if isinstance(model, dict) and old in model:
            bank = raw.setdefault("bank", {}) or {}
            if not isinstance(bank, dict):
                return  # a bank section that is no mapping: _build names it
            if new in bank:
                raise ConfigError(
                    f"{source}: model.{old} ({model[old]!r}) and bank.{new} ({bank[new]!r}) both given: the legacy "
                    f"model.{old} is the old name of bank.{new}; give only --bank.{new}"
                )
            bank[new] = model.pop(old)
            raw["bank"] = bank


def _build(raw: dict, source: str) -> ExperimentConfig:
    move_legacy_bank_keys(raw, source)
    unknown = set(raw) - set(_SECTIONS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown section(s) {sorted(unknown)} (sections: {', '.join(_SECTIONS)})"
        )
    sections = {}
    for name, cls in _SECTIONS.items():
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(
                f"{source}: section {name!r} must be a mapping of keys (e.g. {name}: {{...}}), got {section!r}"
            )
        values = dict(section)
        for key in values:
            if key not in _section_keys(name):
                raise ConfigError(f"{source}: {_unknown(key, name)}")
        if name == "model":
            values["options"] = {k: values.pop(k) for k in list(values) if k in MODEL_OPTIONS}
        sections[name] = _typed(cls, values, f"{source}: {name}")
    return ExperimentConfig(**sections)


def _typed(cls, values: dict, where: str):
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        nested = _dataclass_of(hints[key])
        if nested is not None and isinstance(value, dict):
            unknown = set(value) - {f.name for f in dataclasses.fields(nested)}
            if unknown:
                raise ConfigError(f"{where}.{key}: unknown key(s) {sorted(unknown)}")
            values[key] = _typed(nested, dict(value), f"{where}.{key}")
            continue
        value = values[key] = _yaml11_float(value, hints[key])
        if not _matches(value, hints[key]):
            raise ConfigError(f"{where}.{key} = {value!r} is not of type {_type_name(hints[key])}")
        if hints[key] is float and isinstance(value, int):
            values[key] = float(value)
    try:
        return cls(**values)
    except ValueError as error:  # a library dataclass's own check (e.g. MemoryBankOptions)
        raise ConfigError(f"{where}: {error}") from error


def _dataclass_of(hint: Any) -> type | None:
    """The dataclass a field holds (`LoraSection | None` -> LoraSection), or None."""
    candidates = (
        typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    )
    found = [c for c in candidates if dataclasses.is_dataclass(c)]
    return found[0] if found else None


def _yaml11_float(value: Any, hint: Any) -> Any:
    """YAML 1.1 reads `1e-4` (no dot) as a string; accept it where a float is expected."""
    accepts_float = hint is float or float in typing.get_args(hint)
    if accepts_float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        return isinstance(value, dict) and all(
            _matches(k, key_type) and _matches(v, value_type) for k, v in value.items()
        )
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


_DATA_CHOICES = {
    "invalid_entries": ("error", "skip"),
    "test_leakage": ("error", "warn"),
    "open_track_end": ("video_end", "last_keyframe"),
    "image_caption_field": ("caption", "short_caption"),
}


def _check_data_choices(data: DataSection) -> None:
    for name, choices in _DATA_CHOICES.items():
        if getattr(data, name) not in choices:
            raise ConfigError(f"data.{name} must be one of {choices}, got {getattr(data, name)!r}")
    rates = {
        "data.annotation_fps": data.annotation_fps,
        **{
            f"data.manifest_annotation_fps[{path!r}]": fps
            for path, fps in data.manifest_annotation_fps.items()
        },
    }
    for name, fps in rates.items():
        if not fps > 0:
            raise ConfigError(f"{name} must be > 0, got {fps}")
    if data.box_tolerance < 0:
        raise ConfigError(f"data.box_tolerance must be >= 0, got {data.box_tolerance}")
    unknown = set(data.manifest_annotation_fps) - set(data.train_manifests) - set(data.eval_manifests)
    if unknown:
        raise ConfigError(
            f"data.manifest_annotation_fps names {sorted(unknown)}, which are not in data.train_manifests or "
            "data.eval_manifests (the keys are manifest paths exactly as given there)"
        )


def check_config(config: ExperimentConfig) -> None:
    """Cross-field checks, run once at start, naming the fields and values."""
    train, data = config.train, config.data
    for name in (
        "max_steps",
        "per_device_batch_size",
        "gradient_accumulation_steps",
        "logging_steps",
        "save_steps",
    ):
        if getattr(train, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(train, name)}")
    if data.num_frames < 1 or data.max_regions < 1:
        raise ConfigError(
            f"data.num_frames ({data.num_frames}) and data.max_regions ({data.max_regions}) must be >= 1"
        )
    if data.caption_max_length < 2 or data.global_caption_max_length < 2:
        raise ConfigError(
            f"data.caption_max_length ({data.caption_max_length}) and data.global_caption_max_length "
            f"({data.global_caption_max_length}) must be >= 2 (BOS and EOS)"
        )
    for name in ("max_hard_negatives", "max_failed_clips"):
        if getattr(data, name) < 0:
            raise ConfigError(f"data.{name} must be >= 0, got {getattr(data, name)}")
    _check_sizes(config)
    _check_data_choices(data)
    if config.eval.snippet_pooling not in SNIPPET_POOLINGS:
        raise ConfigError(
            f"eval.snippet_pooling must be one of {SNIPPET_POOLINGS}, got {config.eval.snippet_pooling!r}"
        )
    if not config.eval.window_s > 0:
        raise ConfigError(f"eval.window_s must be > 0 seconds, got {config.eval.window_s}")
    if train.lr_scheduler not in LR_SCHEDULERS:
        raise ConfigError(
            f"train.lr_scheduler: unknown scheduler {train.lr_scheduler!r}; choose from {list(LR_SCHEDULERS)}"
        )
    check_model_section(config.model)
    unknown_evaluators = sorted(set(config.eval.evaluators) - set(evaluator_names()))
    if unknown_evaluators:
        raise ConfigError(f"eval.evaluators: unknown {unknown_evaluators}; choose from {evaluator_names()}")
    weights = {t.weight_field: getattr(config.loss, t.weight_field) for t in LOSS_TERMS}
    if any(w < 0 for w in weights.values()) or not any(weights.values()):
        raise ConfigError(f"loss weights must be >= 0 and not all zero, got {weights}")
    if config.loss.video_label_weight and not (config.loss.video_label_prompts or config.eval.prompts):
        raise ConfigError(
            f"loss.video_label_weight={config.loss.video_label_weight} needs a label prompt set: set "
            "loss.video_label_prompts or eval.prompts (a built-in name or a prompt JSON file)"
        )
    if train.resume not in (None, "latest") and not Path(train.resume).is_dir():
        raise ConfigError(f"train.resume must be 'latest' or a checkpoint directory, got {train.resume!r}")
    if train.resume_changed and train.resume is None:
        raise ConfigError(
            "train.resume_changed (--resume-changed) needs train.resume (--resume latest|CHECKPOINT)"
        )
    if train.resume is not None and train.overwrite_output_dir:
        raise ConfigError(
            f"train.resume={train.resume!r} and train.overwrite_output_dir=true contradict each other: "
            "resume continues the run in output_dir, overwrite deletes it"
        )
    if train.max_consecutive_nonfinite < 1:
        raise ConfigError(
            f"train.max_consecutive_nonfinite must be >= 1, got {train.max_consecutive_nonfinite}"
        )
    if not train.signal_grace_s > 0:
        raise ConfigError(f"train.signal_grace_s must be > 0 seconds, got {train.signal_grace_s}")
    if train.max_grad_norm < 0 or train.warmup_steps < 0:
        raise ConfigError(
            f"train.max_grad_norm ({train.max_grad_norm}) and train.warmup_steps ({train.warmup_steps}) must be >= 0"
        )
    if config.bank.fresh_text and config.bank.text_length < data.caption_max_length:
        # checked here, before training: a too-long caption found at a write would stop one rank only
        raise ConfigError(
            f"bank.text_length ({config.bank.text_length}) must be >= data.caption_max_length "
            f"({data.caption_max_length}) with bank.fresh_text: every banked region caption must fit"
        )
    if train.lora is not None:
        check_lora(train.lora)
        if config.bank.momentum is not None:  # the EMA shadow is keyed by the un-adapted vision weights
            raise ConfigError("bank.momentum is not supported with train.lora: set bank.momentum: null")
    if train.deepspeed is not None:
        check_deepspeed_file(train.deepspeed)
    fields = {f.name for f in dataclasses.fields(FGCLIPConfig)}
    missing = set(MODEL_OPTIONS) - fields
    assert not missing, f"MODEL_OPTIONS out of sync with FGCLIPConfig: {missing}"


def _check_sizes(config: ExperimentConfig) -> None:
    """Counts and durations whose bad values would surface only at the first batch, deep in a worker."""
    data, evaluation = config.data, config.eval
    at_least = {
        "data.num_workers": (data.num_workers, 0),
        "data.context_s": (data.context_s, 0),
        "data.single_keyframe_hold_s": (data.single_keyframe_hold_s, 0),
        "data.image_size": (data.image_size, 1),
        "eval.snippet_frames": (evaluation.snippet_frames, 1),
        "eval.frames_per_snippet": (evaluation.frames_per_snippet, 1),
        "eval.batch_size": (evaluation.batch_size, 1),
    }
    for name, (value, low) in at_least.items():
        if value is not None and not value >= low:  # `not >=`: NaN is refused too
            raise ConfigError(f"{name} must be >= {low}, got {value}")


def check_model_section(model: ModelSection) -> None:
    """Types of `model.tiny` and the FGCLIPConfig options, and the tiny architecture itself, at load time:
    built later they fail as HF dataclass tracebacks (`Field 'hidden_size' expected int, got str`)."""
    if model.init_fine_temperatures not in FINE_TEMPERATURE_RULES:
        raise ConfigError(
            f"model.init_fine_temperatures = {model.init_fine_temperatures!r}; choose from "
            f"{list(FINE_TEMPERATURE_RULES)}"
        )
    for key, value in model.tiny.items():
        if key in TINY_KEYS and not (_matches(value, int) and value >= 1):
            raise ConfigError(f"model.tiny.{key} = {value!r} must be a positive integer")
    annotations = {f.name: f.type for f in dataclasses.fields(FGCLIPConfig)}
    for key, value in model.options.items():
        allowed = _annotation_types(annotations[key])
        if float in allowed:
            value = model.options[key] = _yaml11_float(value, float)
        if allowed and not any(_matches(value, t) for t in allowed):
            names = " or ".join(_type_name(t) for t in allowed)
            raise ConfigError(f"model.{key} = {value!r} is not of type {names}")
    for key, low in MODEL_OPTION_MINIMA.items():
        value = model.options.get(key)
        if value is not None and not value >= low:  # `not >=`: NaN is refused too
            raise ConfigError(f"model.{key} must be >= {low}, got {value!r}")
    if model.init != "tiny" or not set(model.tiny) <= set(TINY_KEYS):
        return  # unknown tiny keys: an error of fgclip.checks.run_config_errors (doctor lists it too)
    tiny = {**_TINY_DEFAULTS, **model.tiny}
    for width in ("vision_width", "text_width"):
        if tiny[width] % tiny["heads"]:  # CLIP's attention splits each width into `heads` equal parts
            raise ConfigError(
                f"model.tiny: {width} ({tiny[width]}) must be divisible by heads ({tiny['heads']})"
            )
    try:
        tiny_config(**model.tiny, **model.options)
    except StrictDataclassError as error:  # e.g. projection_dim not divisible by temporal_num_heads
        raise ConfigError(
            f"model: {strict_error_message(error)} (model.tiny {model.tiny}, options {model.options})"
        ) from None


def _annotation_types(annotation: Any) -> tuple:
    """`"float | int | None"` (FGCLIPConfig's annotations are strings) -> (float, int, NoneType); () if unknown."""
    known = {"float": float, "int": int, "str": str, "bool": bool, "None": type(None)}
    names = [part.strip() for part in str(annotation).split("|")]
    return tuple(known[n] for n in names) if all(n in known for n in names) else ()


def strict_error_message(error: StrictDataclassError) -> str:
    """The cause HF's strict-dataclass errors end with (`    ValueError: region_pooling must be ...`)."""
    last = str(error).strip().splitlines()[-1].strip()
    kind, _, cause = last.partition(": ")
    return cause if kind.endswith("Error") and cause else last


def check_lora(lora: LoraSection) -> None:
    if lora.rank < 1 or lora.alpha <= 0 or not 0 <= lora.dropout < 1:
        raise ConfigError(
            f"train.lora: rank must be >= 1, alpha > 0 and dropout in [0, 1); got rank={lora.rank}, "
            f"alpha={lora.alpha}, dropout={lora.dropout}"
        )
    unknown = sorted(set(lora.target_modules) - set(LORA_MODULES))
    if unknown or not lora.target_modules:
        raise ConfigError(
            f"train.lora.target_modules={lora.target_modules}: choose from {list(LORA_MODULES)} (attention and MLP "
            "projections of the CLIP encoder layers)"
        )
    towers = sorted(set(lora.towers) - {"text", "vision"})
    if towers or not lora.towers:
        raise ConfigError(f"train.lora.towers={lora.towers}: choose from ['text', 'vision']")


def check_deepspeed_file(path: str) -> None:
    """The DeepSpeed config must exist and be JSON; the Trainer fills its "auto" values from train.*."""
    import json

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"train.deepspeed: {path} is not a file")
    try:
        json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"train.deepspeed: {path} is not valid JSON ({error})") from error
