"""The heads table of a model: projection heads, the temporal module and the temperatures, with what each
loss term trains (from `fgclip.losses.terms`).

`fgclip inspect` prints it; `fgclip train` prints it before its first step and, like `fgclip doctor`,
refuses a frozen head or temperature that an enabled loss term trains (`frozen_for_losses`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from fgclip.losses.terms import LOSS_TERMS, PROJECTION_HEADS, TEMPERATURES, TEMPORAL_MODULE, term_named
from fgclip.model.modeling import FGCLIPModel


@dataclass(frozen=True)
class HeadRow:
    name: str
    shape: str
    dtype: str
    requires_grad: str  # "yes", "no", or "partly (k/n)" for a module
    value: float | None = None  # temperatures: the log-scale
    exp: float | None = None  # temperatures: the multiplier applied to cosine similarities


def head_rows(model: FGCLIPModel) -> list[HeadRow]:
    """One row per projection head, the temporal module, and each temperature."""
    rows = [_module_row(name, getattr(model, name)) for name in PROJECTION_HEADS]
    rows.append(_module_row(TEMPORAL_MODULE, getattr(model, TEMPORAL_MODULE)))
    for name in TEMPERATURES:
        scale = getattr(model, name)
        value = float(scale.detach())
        rows.append(
            HeadRow(
                name,
                str(tuple(scale.shape)),
                _dtype(scale),
                _grad(scale.requires_grad),
                value,
                math.exp(value),
            )
        )
    return rows


def format_heads(rows: list[HeadRow]) -> str:
    header = ("name", "shape", "dtype", "requires_grad", "value", "exp")
    table = [header] + [
        (
            r.name,
            r.shape,
            r.dtype,
            r.requires_grad,
            "" if r.value is None else f"{r.value:.4f}",
            "" if r.exp is None else f"{r.exp:.2f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def frozen_for_losses(model: FGCLIPModel, enabled_losses: list[str]) -> dict[str, list[str]]:
    """{head or temperature name: [enabled losses that need it]} for each one with a frozen parameter."""
    frozen: dict[str, list[str]] = {}
    for loss in enabled_losses:
        term = term_named(loss, LOSS_TERMS)
        for name in (*term.heads, term.temperature):
            if any(not p.requires_grad for p in _parameters(model, name)):
                frozen.setdefault(name, []).append(loss)
    return frozen


def heads_report(model: FGCLIPModel, load_report=None) -> dict:
    return {
        "heads": [asdict(row) for row in head_rows(model)],
        "load": load_report.to_dict() if load_report is not None else None,
    }


def _module_row(name: str, module: torch.nn.Module) -> HeadRow:
    parameters = list(module.parameters())
    if len(parameters) == 1:
        (parameter,) = parameters
        return HeadRow(
            f"{name}.weight", str(tuple(parameter.shape)), _dtype(parameter), _grad(parameter.requires_grad)
        )
    count = sum(p.numel() for p in parameters)
    trainable = sum(p.requires_grad for p in parameters)
    grad = (
        _grad(True)
        if trainable == len(parameters)
        else _grad(False)
        if not trainable
        else f"partly ({trainable}/{len(parameters)})"
    )
    dtypes = ",".join(sorted({_dtype(p) for p in parameters}))
    return HeadRow(name, f"{len(parameters)} tensors, {count} parameters", dtypes, grad)


def _parameters(model: FGCLIPModel, name: str) -> list[torch.nn.Parameter]:
    attribute = getattr(model, name)
    return [attribute] if isinstance(attribute, torch.nn.Parameter) else list(attribute.parameters())


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _grad(flag: bool) -> str:
    return "yes" if flag else "no"
