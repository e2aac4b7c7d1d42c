"""Build or load an `FGCLIPModel`. A load is exact, or it is refused with the keys that are wrong.

Three sources, one accounting (`apply_state_dict` -> `LoadReport`: loaded / missing / unexpected /
initialised keys, dtype casts, conversion notes):

- a local HF CLIP directory (config.json + *.safetensors or pytorch_model*.bin), including fgclip's own
  checkpoints and FG-CLIP v1 checkpoints (same layout plus `text_filip_projection`, the long position
  tables and two more temperatures);
- an OpenAI CLIP `.pt` (TorchScript archive or plain state dict), converted by `openai_checkpoint`;
- a `config.json` alone (the file, or a directory holding one and no weights, like the released FG-CLIP base
  config without its weights): that architecture at RANDOM init, for shape, memory and speed work. The report
  says so in its first line (`random_init`), and `fgclip eval` refuses such a model unless asked.

A missing backbone weight is an error unless the caller opts out explicitly (`allow_partial_load`).
What a checkpoint does not carry is initialised and reported: `roi_projection <- visual_projection`,
`text_filip_projection <- text_projection`, the long position tables from the 77-position table,
temperatures from `logit_scale_init_value`. Parameters are always fp32, whatever the checkpoint stores.

A new run may start its region and hard-negative temperatures elsewhere (`init_fine_temperatures`): a CLIP
trained with the global loss only carries no trained fine temperature (a checkpoint without them gets ln 100,
the shipped stand-in saved its untouched ln 100), while its own global temperature says how sharp its
similarities are (the stand-in's: exp 2.68 = 14.6); at ln 100 the first region loss is ~13 nats.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from fgclip.model import openai_checkpoint
from fgclip.model.configuration import FGCLIPConfig
from fgclip.model.errors import CheckpointError, reading_back
from fgclip.model.modeling import FGCLIPModel

__all__ = [
    "CheckpointError",
    "LoadReport",
    "apply_state_dict",
    "build_from_config",
    "is_config_only",
    "load_pretrained",
]

BACKBONE_PREFIXES = ("text_model.", "vision_model.", "visual_projection.", "text_projection.")
HEAD_SOURCES = {
    "roi_projection.weight": "visual_projection.weight",
    "text_filip_projection.weight": "text_projection.weight",
}
LONG_POSITION_KEYS = (
    "text_model.embeddings.position_embedding_ori.weight",
    "text_model.embeddings.position_embedding_res.weight",
)
# Modules new to FG-CLIP video training: a checkpoint of a plain CLIP legitimately lacks them.
NEW_MODULE_PREFIXES = ("temporal.", "memory_bank.")  # memory_bank.*: written by fgclip runs before 0.2
FGCLIP_V1_KEYS = ("text_filip_projection.weight", "logit_scale_finegraind", *LONG_POSITION_KEYS)
# config.json entries that must not travel into our config: remote code pointers, the stored dtype
# (parameters are fp32 here; bf16 is autocast only), bookkeeping.
_DROPPED_CONFIG_KEYS = (
    "model_type",
    "architectures",
    "transformers_version",
    "auto_map",
    "dtype",
    "torch_dtype",
)


@dataclass
class LoadReport:
    source: str
    source_format: str = ""
    loaded: list[str] = field(default_factory=list)
    missing_backbone: list[str] = field(default_factory=list)
    initialised: dict[str, str] = field(default_factory=dict)  # key -> how it was initialised
    unexpected: list[str] = field(default_factory=list)
    cast_to_fp32: dict[str, int] = field(default_factory=dict)  # checkpoint dtype -> number of tensors
    notes: list[str] = field(default_factory=list)
    random_init: bool = False  # built from a config alone: no weight was loaded

    def summary(self) -> str:
        if self.random_init:
            return (
                f"RANDOM INIT: {self.source} is a config without weights; every weight of this model is random "
                "(for shape, memory and speed work only; its scores mean nothing)\n"
                + "\n".join(f"  note: {note}" for note in self.notes)
            ).rstrip()
        lines = [
            f"load {self.source} ({self.source_format}): {len(self.loaded)} loaded, {len(self.missing_backbone)} "
            f"missing backbone, {len(self.initialised)} initialised, {len(self.unexpected)} unexpected"
        ]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [
            f"  precision: {count} tensor(s) stored as {dtype} loaded into float32 parameters"
            for dtype, count in sorted(self.cast_to_fp32.items())
        ]
        lines += self._initialised_lines()
        lines += [f"  MISSING {key}" for key in self.missing_backbone]
        lines += [f"  unexpected {key}" for key in self.unexpected]
        return "\n".join(lines)

    def _initialised_lines(self) -> list[str]:
        """One line per key, except a new module's keys, which share one line (they all start fresh)."""
        lines, modules = [], Counter()
        for key, how in sorted(self.initialised.items()):
            prefix = next((p for p in NEW_MODULE_PREFIXES if key.startswith(p)), None)
            if prefix is None:
                lines.append(f"  initialised {key}: {how}")
            else:
                modules[prefix] += 1
        lines += [
            f"  initialised {prefix}* ({count} keys): new module, fresh initialisation"
            for prefix, count in modules.items()
        ]
        return lines

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "source_format": self.source_format,
            "random_init": self.random_init,
            "counts": {
                "loaded": len(self.loaded),
                "missing_backbone": len(self.missing_backbone),
                "initialised": len(self.initialised),
                "unexpected": len(self.unexpected),
            },
            "loaded": self.loaded,
            "missing_backbone": self.missing_backbone,
            "initialised": self.initialised,
            "unexpected": self.unexpected,
            "cast_to_fp32": self.cast_to_fp32,
            "notes": self.notes,
        }


# How a new run's region and hard-negative temperatures start (config `model.init_fine_temperatures`)
FINE_TEMPERATURE_RULES = ("checkpoint", "global", "init_value")


def init_fine_temperatures(model: FGCLIPModel, rule: str, report: LoadReport | None = None) -> None:
    """Set every temperature but the global one by `rule`: "checkpoint" leaves them as loaded, "global" copies
    the (loaded) global `logit_scale`, "init_value" sets `logit_scale_init_value`. Noted in `report`."""
    if rule not in FINE_TEMPERATURE_RULES:
        raise ValueError(f"init_fine_temperatures: unknown rule {rule!r} (rules: {FINE_TEMPERATURE_RULES})")
    if rule == "checkpoint":
        return
    scales = model.logit_scales()
    value = (
        float(scales["logit_scale"].detach())
        if rule == "global"
        else float(model.config.logit_scale_init_value)
    )
    source = "the global logit_scale" if rule == "global" else "logit_scale_init_value"
    with torch.no_grad():
        for name in scales:  # the model names its temperatures
            if name != "logit_scale":
                scales[name].fill_(value)
                if report is not None:
                    report.initialised[name] = f"{value:.4f} ({source}; model.init_fine_temperatures={rule})"


def load_pretrained(
    path: str | Path, *, allow_partial_load: bool = False, **options
) -> tuple[FGCLIPModel, LoadReport]:
    """Load a local HF CLIP / fgclip / FG-CLIP v1 directory or an OpenAI CLIP `.pt` file.

    `options` override FGCLIPConfig fields (memory bank, temperatures init, ...). Nothing is downloaded
    and no checkpoint code runs.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (nothing is downloaded; give a local path)")
    if is_config_only(path):
        return build_from_config(path, **options)
    if path.is_dir():
        return _load_directory(path, allow_partial_load, options)
    return _load_openai_file(path, allow_partial_load, options)


def is_config_only(path: str | Path) -> bool:
    """A `*.json` file, or a directory with a config.json and no weight files: an architecture, no weights."""
    path = Path(path)
    if path.is_file():
        return path.suffix == ".json"
    return path.is_dir() and (path / "config.json").is_file() and not _weight_files(path)


def build_from_config(path: str | Path, **options) -> tuple[FGCLIPModel, LoadReport]:
    """The architecture of a CLIP / FG-CLIP `config.json` (or of the directory holding it) at random init.

    `options` override FGCLIPConfig fields as for `load_pretrained`. The report is marked `random_init`.
    """
    path = Path(path)
    config_file = path / "config.json" if path.is_dir() else path
    config, raw = _read_config_file(config_file, options)
    model = FGCLIPModel(config)
    vision, text = config.vision_config, config.text_config
    report = LoadReport(str(path), "config.json only (random init)", random_init=True)
    report.notes.append(
        f"architecture: ViT {vision.hidden_size}-wide x {vision.num_hidden_layers} layers, patch {vision.patch_size}, "
        f"{vision.image_size} px; text {text.hidden_size}-wide x {text.num_hidden_layers} layers, vocabulary "
        f"{text.vocab_size}; {sum(p.numel() for p in model.parameters()):,} parameters"
    )
    report.initialised = {name: "random init (no weights)" for name in model.state_dict()}
    _check_fp32(model, report.source)
    return model, report


def _load_directory(path: Path, allow_partial_load: bool, options: dict) -> tuple[FGCLIPModel, LoadReport]:
    config, raw = _read_config(path, options)
    state = _read_state_dict(path)
    report = LoadReport(str(path), _directory_format(raw, state))
    declared = raw.get("dtype") or raw.get("torch_dtype")
    if declared not in (None, "float32"):
        report.notes.append(
            f"config.json declares dtype {declared}; parameters are float32 (bf16 is autocast only)"
        )
    model = FGCLIPModel(config)
    apply_state_dict(model, state, report=report, allow_partial_load=allow_partial_load)
    return model, report


def _load_openai_file(path: Path, allow_partial_load: bool, options: dict) -> tuple[FGCLIPModel, LoadReport]:
    state, file_format = openai_checkpoint.read_checkpoint_file(path)
    if not openai_checkpoint.is_openai_layout(state):
        hf_like = any(k.startswith(("vision_model.", "text_model.")) for k in state)
        raise CheckpointError(
            f"{path}: not an OpenAI CLIP state dict (no visual.conv1.weight / token_embedding.weight)"
            + (
                "; its keys are HF-layout: put it in a directory with its config.json and load the directory"
                if hf_like
                else ""
            )
        )
    arch = openai_checkpoint.infer_architecture(state, str(path))
    converted, unexpected, notes = openai_checkpoint.convert_state_dict(state)
    report = LoadReport(
        str(path), f"OpenAI CLIP {file_format}", unexpected=unexpected, notes=[arch.describe(), *notes]
    )
    model = FGCLIPModel(arch.to_config(**options))
    apply_state_dict(model, converted, report=report, allow_partial_load=allow_partial_load)
    return model, report


def apply_state_dict(
    model: FGCLIPModel,
    state: dict[str, torch.Tensor],
    *,
    allow_partial_load: bool,
    report: LoadReport | None = None,
    source: str = "<state dict>",
) -> LoadReport:
    """Copy `state` into `model` and account for every key; refuse a partial backbone."""
    report = report if report is not None else LoadReport(source, "state dict")
    expected = model.state_dict()
    report.unexpected = sorted(
        {*report.unexpected, *(k for k in state if k not in expected and not k.endswith("position_ids"))}
    )
    _check_shapes(state, expected, report.source)
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    report.loaded = sorted(k for k in expected if k in state)
    report.cast_to_fp32 = dict(
        Counter(str(state[k].dtype) for k in report.loaded if state[k].dtype != torch.float32)
    )
    missing = [k for k in expected if k not in state]
    report.missing_backbone = [
        k for k in missing if k.startswith(BACKBONE_PREFIXES) and k not in LONG_POSITION_KEYS
    ]
    _initialise_missing(model, missing, report)
    if report.missing_backbone and not allow_partial_load:
        raise CheckpointError(_missing_message(report))
    _check_fp32(model, report.source)
    return report


def _check_shapes(state: dict, expected: dict, source: str) -> None:
    errors = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if errors:
        raise CheckpointError(f"{source}: shape mismatch for {len(errors)} key(s):\n  " + "\n  ".join(errors))


def _missing_message(report: LoadReport) -> str:
    message = (
        f"{report.source}: {len(report.missing_backbone)} backbone weight(s) missing — training would continue on "
        "a partly random model. Missing:\n  " + "\n  ".join(report.missing_backbone[:50])
    )
    if report.unexpected:
        message += "\nUnexpected keys in the checkpoint (a different layout?):\n  " + "\n  ".join(
            report.unexpected[:20]
        )
    return message + "\nPass allow_partial_load (model.allow_partial_load: true) only if this is deliberate."


def _initialise_missing(model: FGCLIPModel, missing: list[str], report: LoadReport) -> None:
    parameters = dict(model.named_parameters())
    temperatures = model.logit_scales()  # the model names its own
    with torch.no_grad():
        for key in missing:
            if key in HEAD_SOURCES:
                parameters[key].copy_(parameters[HEAD_SOURCES[key]])
                report.initialised[key] = f"copied from {HEAD_SOURCES[key]}"
            elif key in temperatures:
                value = float(model.config.logit_scale_init_value)
                parameters[key].fill_(value)
                report.initialised[key] = f"{value:.4f} (logit_scale_init_value)"
            elif key.startswith(NEW_MODULE_PREFIXES):
                report.initialised[key] = "new module, fresh initialisation"
            elif key not in report.missing_backbone and key not in LONG_POSITION_KEYS:
                report.initialised[key] = "fresh initialisation"
        if any(key in LONG_POSITION_KEYS for key in missing):
            _build_long_tables(model, missing, report)


def _build_long_tables(model: FGCLIPModel, missing: list[str], report: LoadReport) -> None:
    """A checkpoint without FG-CLIP's long tables (plain CLIP) gets both built from its 77-position table."""
    if not all(key in missing for key in LONG_POSITION_KEYS):
        present = [key for key in LONG_POSITION_KEYS if key not in missing]
        raise CheckpointError(
            f"{report.source}: has {present} but not both long position tables {list(LONG_POSITION_KEYS)}"
        )
    model.build_long_position_tables()
    how = (
        "built from text_model.embeddings.position_embedding.weight (FG-CLIP: first "
        f"{model.config.long_text_keep_positions} copied, gaps interpolated 4x, tail extrapolated)"
    )
    for key in LONG_POSITION_KEYS:
        report.initialised[key] = how


def _check_fp32(model: FGCLIPModel, source: str) -> None:
    wrong = sorted({str(p.dtype) for p in model.parameters() if p.dtype != torch.float32})
    if wrong:
        raise CheckpointError(f"{source}: parameters in {wrong} after loading; they must be float32")


def _directory_format(raw: dict, state: dict) -> str:
    if raw.get("model_type") == "fgclip":
        return "fgclip checkpoint"
    if any(key in state for key in FGCLIP_V1_KEYS):
        return "FG-CLIP v1 checkpoint"
    return "HF CLIP directory"


def _read_config(path: Path, options: dict) -> tuple[FGCLIPConfig, dict]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: no config.json")
    return _read_config_file(config_file, options)


def _read_config_file(config_file: Path, options: dict) -> tuple[FGCLIPConfig, dict]:
    with reading_back(config_file, "model config", _WAY_OUT):
        raw = json.loads(config_file.read_bytes())
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{config_file}: damaged model config (a JSON {type(raw).__name__}, not an object)"
        )
    if raw.get("model_type") not in ("clip", "fgclip"):
        raise CheckpointError(
            f"{config_file}: model_type {raw.get('model_type')!r} is not a CLIP ('clip' or 'fgclip')"
        )
    keep = {k: v for k, v in raw.items() if k not in _DROPPED_CONFIG_KEYS}
    if raw.get("model_type") == "clip":
        keep.pop("logit_scale_init_value", None)  # CLIP's 2.6592; the checkpoint's own logit_scale is loaded
    return FGCLIPConfig(**{**keep, **options}), raw


_WAY_OUT = "copy the checkpoint again from where it was saved, or use another checkpoint of the run"


def _weight_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors")) + sorted(path.glob("pytorch_model*.bin"))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    shards = sorted(path.glob("*.safetensors"))
    if shards:
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            with reading_back(shard, "weights file (truncated or overwritten?)", _WAY_OUT):
                state.update(load_file(str(shard)))
        return state
    bins = sorted(path.glob("pytorch_model*.bin"))
    if bins:
        state = {}
        for shard in bins:
            with reading_back(shard, "weights file", _WAY_OUT):
                state.update(torch.load(shard, map_location="cpu", weights_only=True))
        return state
    raise CheckpointError(f"{path}: no *.safetensors or pytorch_model*.bin weights")
