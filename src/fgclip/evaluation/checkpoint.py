"""Load what `fgclip train` wrote: the model, its tokenizer and the run config (`fgclip_config.yaml`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from fgclip.config import ConfigError, ExperimentConfig, load_config
from fgclip.model.loading import LoadReport, load_pretrained
from fgclip.training.run import RUN_CONFIG_FILE

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
) -> LoadedRun:
    """Model (exact load, see `load_pretrained`), tokenizer and run config with `--key value` overrides."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {checkpoint}")
    config_path = run_config_path(checkpoint, config)
    run_config = load_config(config_path, overrides)
    model, report = load_pretrained(checkpoint)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    return LoadedRun(checkpoint, config_path, run_config, model, load_tokenizer(checkpoint), report)
