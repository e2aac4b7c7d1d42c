"""Build or load an `FGCLIPModel`. A load is exact, or it is refused with the keys that are wrong.

Every load produces a `LoadReport` (loaded / missing / unexpected / initialised keys). A missing backbone
weight is an error unless the caller opts out explicitly (`allow_partial_load`). Heads the checkpoint does
not carry are initialised from the pretrained ones (`roi_projection <- visual_projection`,
`text_filip_projection <- text_projection`), temperatures from `logit_scale_init_value`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from fgclip.model.configuration import FGCLIPConfig
from fgclip.model.modeling import FGCLIPModel

BACKBONE_PREFIXES = ("text_model.", "vision_model.", "visual_projection.", "text_projection.")
HEAD_SOURCES = {
    "roi_projection.weight": "visual_projection.weight",
    "text_filip_projection.weight": "text_projection.weight",
}
TEMPERATURES = ("logit_scale", "logit_scale_finegraind", "logit_scale_hardneg")
# Modules new to FG-CLIP video training: a checkpoint of a plain CLIP legitimately lacks them.
NEW_MODULE_PREFIXES = ("temporal.", "memory_bank.")


class CheckpointError(RuntimeError):
    pass


@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    missing_backbone: list[str] = field(default_factory=list)
    initialised: dict[str, str] = field(default_factory=dict)  # key -> how it was initialised
    unexpected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"load {self.source}: {len(self.loaded)} loaded, {len(self.missing_backbone)} missing backbone, "
            f"{len(self.initialised)} initialised, {len(self.unexpected)} unexpected"
        ]
        lines += [f"  initialised {key}: {how}" for key, how in sorted(self.initialised.items())]
        lines += [f"  MISSING {key}" for key in self.missing_backbone]
        lines += [f"  unexpected {key}" for key in self.unexpected]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "loaded": len(self.loaded),
            "missing_backbone": self.missing_backbone,
            "initialised": self.initialised,
            "unexpected": self.unexpected,
        }


def load_pretrained(
    path: str | Path, *, allow_partial_load: bool = False, **options
) -> tuple[FGCLIPModel, LoadReport]:
    """Load a local HF CLIP or fgclip checkpoint directory. `options` override FGCLIPConfig fields."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (nothing is downloaded; give a local path)")
    if not path.is_dir():
        raise CheckpointError(f"{path}: expected a directory with config.json and weights")
    config = _read_config(path, options)
    state = _read_state_dict(path)
    model = FGCLIPModel(config)
    report = apply_state_dict(model, state, source=str(path), allow_partial_load=allow_partial_load)
    return model, report


def apply_state_dict(
    model: FGCLIPModel, state: dict[str, torch.Tensor], *, source: str, allow_partial_load: bool
) -> LoadReport:
    """Copy `state` into `model` and account for every key; refuse a partial backbone."""
    expected = model.state_dict()
    report = LoadReport(source)
    report.unexpected = sorted(k for k in state if k not in expected and not k.endswith("position_ids"))
    shape_errors = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if shape_errors:
        raise CheckpointError(
            f"{source}: shape mismatch for {len(shape_errors)} key(s):\n  " + "\n  ".join(shape_errors)
        )
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    report.loaded = sorted(k for k in expected if k in state)
    missing = [k for k in expected if k not in state]
    report.missing_backbone = [k for k in missing if k.startswith(BACKBONE_PREFIXES)]
    _initialise_missing(model, missing, report)
    if report.missing_backbone and not allow_partial_load:
        raise CheckpointError(
            f"{source}: {len(report.missing_backbone)} backbone weight(s) missing — training would continue on a "
            f"partly random model. Missing:\n  "
            + "\n  ".join(report.missing_backbone[:50])
            + "\nPass allow_partial_load (model.allow_partial_load: true) only if this is deliberate."
        )
    return report


def _initialise_missing(model: FGCLIPModel, missing: list[str], report: LoadReport) -> None:
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for key in missing:
            if key in HEAD_SOURCES:
                parameters[key].copy_(parameters[HEAD_SOURCES[key]])
                report.initialised[key] = f"copied from {HEAD_SOURCES[key]}"
            elif key in TEMPERATURES:
                value = float(model.config.logit_scale_init_value)
                parameters[key].fill_(value)
                report.initialised[key] = f"{value:.4f} (logit_scale_init_value)"
            elif key.startswith(NEW_MODULE_PREFIXES):
                report.initialised[key] = "new module, fresh initialisation"
            elif key not in report.missing_backbone:
                report.initialised[key] = "fresh initialisation"


def _read_config(path: Path, options: dict) -> FGCLIPConfig:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: no config.json")
    raw = json.loads(config_file.read_text())
    if raw.get("model_type") not in ("clip", "fgclip"):
        raise CheckpointError(
            f"{config_file}: model_type {raw.get('model_type')!r} is not a CLIP ('clip' or 'fgclip')"
        )
    keep = {k: v for k, v in raw.items() if k not in ("model_type", "architectures", "transformers_version")}
    if raw.get("model_type") == "clip":
        keep.pop("logit_scale_init_value", None)  # CLIP's 2.6592; the checkpoint's own logit_scale is loaded
    return FGCLIPConfig(**{**keep, **options})


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    shards = sorted(path.glob("*.safetensors"))
    if shards:
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(shard)))
        return state
    bins = sorted(path.glob("pytorch_model*.bin"))
    if bins:
        state = {}
        for shard in bins:
            state.update(torch.load(shard, map_location="cpu", weights_only=True))
        return state
    raise CheckpointError(f"{path}: no *.safetensors or pytorch_model*.bin weights")
