"""`FGCLIPTrainer`: the HF Trainer with our loss, optimizer groups, per-step report, guarded steps and
crash-safe checkpoints.

Overrides only what it must:
- `compute_loss` is one call of the alignment task (`fgclip.losses.task`: bank read, model, objective,
  bank write) and returns the mean loss of one micro-batch; the Trainer divides it by the number of
  micro-batches in the step exactly once (`loss_is_scaled_for_ga = False`).
- `create_optimizer`: param groups (text tower, vision tower, heads, temperatures; decay / no decay).
- `_save_checkpoint`: HF writes the checkpoint into `.staging/`; it is renamed into place once complete and
  rotated by step number (HF 5.x writes in place and rotates by modification time).
- `_save` / `_load_from_checkpoint`: LoRA runs save a merged model plus their unmerged training state;
  a resumed checkpoint must match the model key for key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Sampler
from transformers import Trainer, TrainerCallback

from fgclip.distributed import gather_objects, get_world_size_and_rank
from fgclip.losses.task import AlignmentTask
from fgclip.losses.terms import TEMPERATURES
from fgclip.model.errors import CheckpointError, reading_back
from fgclip.training.checkpoints import (
    OPTIMIZER_FILE,
    RESUME_WAY_OUT,
    RUN_CONFIG_FILE,
    SCHEDULER_FILE,
    STAGING_DIR,
    promote,
    rotate_checkpoints,
    saving,
    staging_path,
)
from fgclip.training.lora import (
    is_peft_model,
    load_lora_training_state,
    merged_state_dict,
    save_lora_training_state,
    unwrap_model,
)
from fgclip.training.nonfinite import NonFiniteGuard, NonFiniteLossError
from fgclip.training.step_report import StepReport

GROUP_KINDS = ("text", "vision", "heads", "temperatures")
BANK_DIGEST_FILE = "memory_bank_ranks.json"


@dataclass(frozen=True)
class GroupRates:
    text: float
    vision: float
    heads: float
    temperatures: float


class FGCLIPTrainer(Trainer):
    loss_is_scaled_for_ga = False
    _staging = False  # while True, HF's checkpoint code writes under OUTPUT_DIR/.staging

    def __init__(
        self,
        *args,
        task: AlignmentTask,
        step_report: StepReport,
        group_rates: GroupRates,
        nonfinite_guard: NonFiniteGuard,
        train_sampler: Sampler | None = None,
        run_config_file: str | Path | None = None,
        run_files: list[Path] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.task = task
        self.step_report = step_report
        self.group_rates = group_rates
        self.nonfinite = nonfinite_guard
        self.train_sampler = train_sampler
        self.run_config_file = Path(run_config_file) if run_config_file is not None else None
        self.run_files = list(run_files or [])  # copied into every checkpoint beside the run config
        self.add_callback(_GuardedStep(self))

    def _get_train_sampler(self, train_dataset=None):
        return (
            self.train_sampler
            if self.train_sampler is not None
            else super()._get_train_sampler(train_dataset)
        )

    # ------------------------------------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        step = self.state.global_step  # optimizer steps done so far
        out = self.task(model, inputs, step)  # reads the bank, runs model + objective, writes the bank
        finite = self.nonfinite.record(step + 1, out.loss, out.losses, inputs["sample_ids"])
        valid = inputs["region_valid"]
        values = {
            "train/nonfinite_micro_batches": float(not finite),
            "data/dropped_regions": inputs["dropped_regions"].sum(),
            "data/regions_per_clip": valid.sum(1).float().mean(),
        }
        if finite:  # a NaN would poison the step's average; the skip is reported instead
            values.update(
                {
                    "loss": out.loss,
                    **{f"loss/{name.removesuffix('_loss')}": value for name, value in out.losses.items()},
                    **out.report,
                }
            )
        self.step_report.add(values)
        return (out.loss, out.features) if return_outputs else out.loss

    def floating_point_ops(self, inputs) -> int:
        return 0  # HF's estimate counts text tokens only; it would be wrong for video clips

    # ----------------------------------------------------------------------------------- optimizer step
    def guard_step(self, model) -> None:
        """Before the optimizer step (all ranks, one all-reduce): skip it if any micro-batch was non-finite."""
        step = self.state.global_step + 1
        skipped = self.nonfinite.step_is_skipped(self.args.device)
        if skipped:
            self.nonfinite.skip(step, model)
            if self.is_deepspeed_enabled:
                raise NonFiniteLossError(
                    f"non-finite loss at step {step} under DeepSpeed, which applies the update inside backward: "
                    "the step cannot be skipped. Resume from the last checkpoint (e.g. with a lower learning rate)."
                )
        else:
            self.nonfinite.keep()
        self.step_report.add({"train/skipped_step": float(skipped)})

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = model if model is not None else self.model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            optimizer_kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(
                param_groups(model, self.group_rates, self.args.weight_decay), **optimizer_kwargs
            )
        return self.optimizer

    # -------------------------------------------------------------------------------------- checkpoints
    def _get_output_dir(self, trial) -> str:
        run_dir = super()._get_output_dir(trial)
        return os.path.join(run_dir, STAGING_DIR) if self._staging else run_dir

    def _save_checkpoint(self, model, trial) -> None:
        """HF's checkpoint, written into `.staging/checkpoint-N` by every rank, then renamed into place."""
        run_dir = Path(self._get_output_dir(trial))
        final = run_dir / f"checkpoint-{self.state.global_step}"
        staged = staging_path(final)
        if self.args.should_save and staged.exists():
            shutil.rmtree(staged)
        self.accelerator.wait_for_everyone()
        self._staging = True
        try:
            with saving(staged, f"checkpoint-{self.state.global_step}"):  # a full disk names the folder
                super()._save_checkpoint(model, trial)
        finally:
            self._staging = False
        self._check_bank_identical(staged)
        self.accelerator.wait_for_everyone()  # every rank's files (RNG states, ZeRO shards) are written
        if self.args.should_save:
            promote(staged, final)
            rotate_checkpoints(run_dir, self.args.save_total_limit)
        self.accelerator.wait_for_everyone()

    def _check_bank_identical(self, checkpoint: Path) -> None:
        """Every rank must hold the same bank (all-gathered writes); record each rank's digest, refuse a split."""
        bank = self.task.bank
        world_size, _ = get_world_size_and_rank()
        if bank is None or world_size == 1:
            return
        digests = gather_objects(bank_digest(bank))
        if self.args.should_save:
            (checkpoint / BANK_DIGEST_FILE).write_text(json.dumps({"digests": digests}, indent=1))
        if len(set(digests)) > 1:
            raise RuntimeError(
                f"the memory bank differs between ranks at step {self.state.global_step} (digests {digests}): "
                "its writes must be all-gathered and DDP must not broadcast buffers"
            )

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if is_peft_model(self.model):
            self._save_lora(output_dir)
        else:
            super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save and self.run_config_file is not None:
            shutil.copyfile(self.run_config_file, Path(output_dir) / RUN_CONFIG_FILE)
        for file in self.run_files if self.args.should_save else ():
            shutil.copyfile(file, Path(output_dir) / file.name)

    def _save_lora(self, output_dir: str) -> None:
        """A merged full model (loads with `from_pretrained`) plus the unmerged state resume needs."""
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        unwrap_model(self.model).save_pretrained(output_dir, state_dict=merged_state_dict(self.model))
        save_lora_training_state(self.model, output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = model if model is not None else self.model
        with reading_back(
            Path(resume_from_checkpoint) / "model.safetensors", "model weights", RESUME_WAY_OUT
        ):
            if is_peft_model(model):
                load_lora_training_state(model, resume_from_checkpoint)
            else:
                super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """HF's loading, each file's damage named: scheduler.pt is read first (small), so a failure after it is
        optimizer.pt's (truncated, or saved for other parameter groups)."""
        if checkpoint is not None and not self.is_deepspeed_enabled:
            scheduler = Path(checkpoint) / SCHEDULER_FILE
            with reading_back(scheduler, "LR scheduler state", RESUME_WAY_OUT):
                torch.load(scheduler, map_location="cpu", weights_only=True)
        with reading_back(Path(checkpoint or ".") / OPTIMIZER_FILE, "optimizer state", RESUME_WAY_OUT):
            super()._load_optimizer_and_scheduler(checkpoint)

    def _load_rng_state(self, checkpoint: str | None) -> None:
        name = f"rng_state_{self.args.process_index}.pth" if self.args.world_size > 1 else "rng_state.pth"
        with reading_back(Path(checkpoint or ".") / name, "RNG state", RESUME_WAY_OUT):
            super()._load_rng_state(checkpoint)

    def _issue_warnings_after_load(self, load_result) -> None:
        """HF only warns; a resumed run on a partly loaded model would silently train something else."""
        if load_result.missing_keys or load_result.unexpected_keys:
            raise CheckpointError(
                f"the checkpoint does not match the model: missing keys {load_result.missing_keys[:8]} "
                f"({len(load_result.missing_keys)}), unexpected keys {load_result.unexpected_keys[:8]} "
                f"({len(load_result.unexpected_keys)})"
            )


class _GuardedStep(TrainerCallback):
    """Runs the non-finite guard after clipping and before `optimizer.step()` (HF's `on_pre_optimizer_step`)."""

    def __init__(self, trainer: FGCLIPTrainer):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer.guard_step(self.trainer.model_wrapped)


def bank_digest(bank: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, buffer in sorted(bank.state_dict().items()):
        digest.update(name.encode())
        digest.update(buffer.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ param groups
def param_groups(model, rates: GroupRates, weight_decay: float) -> list[dict]:
    """Text tower, vision tower, heads (projections, temporal, region), temperatures — each split by decay.

    Decayed: the weight matrices of linear and convolution layers (the patch projection and LoRA matrices
    included). Not decayed: temperatures, norms, biases and embedding tables (token, position, FG-CLIP's
    long-caption tables, class embedding, temporal position embedding) — decaying them pulls a temperature,
    a LayerNorm gain or a position towards zero, which is never what contrastive training wants.
    Works on the bare model and under DDP / peft wrappers (names are taken from the unwrapped model).
    """
    core = unwrap_model(model)
    decayed = decayed_parameter_names(core)
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, parameter in core.named_parameters():
        if parameter.requires_grad:
            groups.setdefault((group_of(name), name in decayed), []).append(parameter)
    return [
        {
            "name": f"{kind}/{'decay' if decay else 'no_decay'}",
            "params": groups[(kind, decay)],
            "lr": getattr(rates, kind),
            "weight_decay": weight_decay if decay else 0.0,
        }
        for kind in GROUP_KINDS
        for decay in (True, False)
        if (kind, decay) in groups
    ]


def group_of(name: str) -> str:
    if name.startswith("text_model."):
        return "text"
    if name.startswith("vision_model."):
        return "vision"
    if name in TEMPERATURES:
        return "temperatures"
    return "heads"


def decayed_parameter_names(model: nn.Module) -> set[str]:
    names = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            names.add(f"{prefix}weight")
        elif isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
            names.add(f"{prefix}in_proj_weight")
    return names - set(TEMPERATURES)
