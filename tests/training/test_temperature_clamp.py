"""`TemperatureClamp`: the log-temperatures are clamped in the weights the optimizer updates — the model's
parameters without DeepSpeed, DeepSpeed's fp32 master partitions with it (a clamp of the bf16 model copy
alone is overwritten by the master at the next step).

Three levels: the plain path; the DeepSpeed path against a fake of DeepSpeed's two public functions (fast,
always run: it pins what the callback asks of the API); and a real one-process ZeRO-2 bf16 engine on CPU over
gloo (slow; skipped where DeepSpeed is not installed).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch
from gloo_workers import free_port, spawn
from tiny_models import tiny_fgclip

from fgclip.training import callbacks
from fgclip.training.callbacks import TemperatureClamp


def _set_scales(model, values) -> None:
    with torch.no_grad():
        for scale, value in zip(model.logit_scales().values(), values, strict=True):
            scale.fill_(value)


def test_plain_path_clamps_the_parameters_above_the_ceiling_only(monkeypatch):
    monkeypatch.setattr(callbacks, "_deepspeed_utils", lambda: None)
    model = tiny_fgclip()
    ceiling = model.config.logit_scale_max
    _set_scales(model, [ceiling + 1.0, ceiling, ceiling - 0.5])
    TemperatureClamp(model).on_optimizer_step(None, None, None)
    values = [scale.detach() for scale in model.logit_scales().values()]
    assert values[0] == torch.tensor(ceiling) and values[1] == torch.tensor(ceiling)
    assert values[2] == torch.tensor(ceiling - 0.5)


class FakeDeepSpeedUtils:
    """`deepspeed.utils.safe_get_full_fp32_param` / `safe_set_full_fp32_param` over a separate fp32 master
    per parameter (ZeRO's partitions, whole here); None for a parameter it does not hold, as DeepSpeed."""

    def __init__(self, masters: dict[int, torch.Tensor]):
        self.masters = masters  # {id(param): fp32 master}
        self.sets = 0

    def safe_get_full_fp32_param(self, param):
        master = self.masters.get(id(param))
        return None if master is None else master.clone()

    def safe_set_full_fp32_param(self, param, value):
        self.masters[id(param)].copy_(value)
        self.sets += 1


def test_deepspeed_path_clamps_the_fp32_masters_and_the_model_copy(monkeypatch):
    model = tiny_fgclip().to(torch.bfloat16)  # the model holds bf16 copies, the masters fp32
    ceiling = model.config.logit_scale_max
    scales = list(model.logit_scales().values())
    masters = [torch.tensor(ceiling + 0.3), torch.tensor(ceiling - 0.2)]  # the third: not DeepSpeed's
    fake = FakeDeepSpeedUtils({id(scales[0]): masters[0], id(scales[1]): masters[1]})
    monkeypatch.setattr(callbacks, "_deepspeed_utils", lambda: fake)
    _set_scales(model, [ceiling + 0.3, ceiling - 0.2, ceiling + 2.0])
    TemperatureClamp(model).on_optimizer_step(None, None, None)
    assert masters[0] == torch.tensor(ceiling)  # fp32, exactly the ceiling
    assert masters[1] == torch.tensor(ceiling - 0.2) and fake.sets == 1  # below: untouched
    ceiling_bf16 = torch.tensor(ceiling, dtype=torch.bfloat16)
    assert all(scale.dtype == torch.bfloat16 for scale in scales)
    assert scales[0] == ceiling_bf16 and scales[2] == ceiling_bf16  # the copies, DeepSpeed's or not
    assert scales[1] == torch.tensor(ceiling - 0.2, dtype=torch.bfloat16)


# ------------------------------------------------------------------------------- a real DeepSpeed engine
def _engine_worker(rank: int, port: int) -> None:
    """One-process ZeRO-2 bf16 engine on CPU: the old clamp (the model copy) lets the master drift past the
    ceiling and the next step copies it back; `TemperatureClamp` keeps master and copy at the ceiling."""
    os.environ.update(DS_ACCELERATOR="cpu", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    import deepspeed
    import deepspeed.comm.torch  # noqa: F401  (the module; `deepspeed.comm.torch` as an attribute is torch)
    from deepspeed.utils import safe_get_full_fp32_param

    # DeepSpeed's CPU accelerator JIT-compiles an optional shared-memory all-reduce in `init_distributed`
    # (minutes of g++; a killed build leaves a lock that stalls every later start): gloo alone is enough.
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
    deepspeed.init_distributed(dist_backend="gloo")
    model = tiny_fgclip()
    ceiling = model.config.logit_scale_max
    _set_scales(model, [ceiling - 0.05] * 3)
    # AdamW without moments or decay: every step moves each temperature up by exactly lr (the sign of its
    # gradient; loss -sum(exp(s))), and the rest (zero gradients) not at all.
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.0, 0.0), weight_decay=0.0)
    config = {
        "train_micro_batch_size_per_gpu": 1,
        "bf16": {"enabled": True},
        "zero_optimization": {"stage": 2},
    }
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    scales = model.logit_scales()

    def step() -> dict[str, torch.Tensor]:
        pixels = torch.randn(1, 1, 3, 32, 32, dtype=torch.bfloat16)
        features = engine(pixel_values=pixels, frame_mask=torch.ones(1, 1, dtype=torch.bool))
        loss = -sum(features[name].float() for name in scales) + 0.0 * features["clip_embeds"].float().sum()
        engine.backward(loss)
        engine.step()
        return features

    def masters() -> list[float]:
        return [safe_get_full_fp32_param(scale).item() for scale in scales.values()]

    assert all(scale.dtype == torch.bfloat16 for scale in scales.values())
    assert all(safe_get_full_fp32_param(scale) is not None for scale in scales.values())
    # The old clamp, the model copy only: the master is left above the ceiling, and the next step updates
    # that master and copies it back into the model.
    step()
    assert all(m > ceiling + 0.01 for m in masters()), masters()
    model.clamp_logit_scales()
    assert all(m > ceiling + 0.01 for m in masters()), masters()
    step()
    assert all(scale.item() > ceiling + 0.1 for scale in scales.values())  # the copy drifted back past it
    # ... while the forward uses no more than the ceiling (in bf16, as the engine runs it).
    with torch.no_grad():
        features = engine(pixel_values=torch.randn(1, 1, 3, 32, 32, dtype=torch.bfloat16),
                          frame_mask=torch.ones(1, 1, dtype=torch.bool))  # fmt: skip
    ceiling_bf16 = torch.tensor(ceiling, dtype=torch.bfloat16)
    assert all(torch.equal(features[name], ceiling_bf16.exp()) for name in scales)
    # TemperatureClamp: the masters themselves, and the copy; a step from the ceiling (gradient flows there)
    # goes above again and is clamped again.
    clamp = TemperatureClamp(model)
    for _ in range(2):
        clamp.on_optimizer_step(None, None, None)
        assert masters() == [torch.tensor(ceiling).item()] * 3
        assert all(scale.item() <= ceiling for scale in scales.values())
        step()
        assert all(m > ceiling for m in masters()), masters()  # at the ceiling the gradient moved it
    clamp.on_optimizer_step(None, None, None)
    assert masters() == [torch.tensor(ceiling).item()] * 3


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed")
def test_real_deepspeed_zero2_engine_clamps_the_fp32_masters():
    from fgclip.checks import deepspeed_version_problem

    problem = deepspeed_version_problem()
    if problem is not None:
        pytest.skip(problem)
    spawn(_engine_worker, (free_port(),), nprocs=1, deadline_s=300)


def test_a_deepspeed_release_that_cannot_start_fgclip_is_refused_before_the_run(monkeypatch, tmp_path):
    from fgclip import checks
    from fgclip.config import ExperimentConfig

    installed = {"deepspeed": "0.19.8"}

    def version(name):
        if name not in installed:
            raise checks.metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(checks.metadata, "version", version)
    config = ExperimentConfig()
    config.train.deepspeed = "configs/deepspeed_zero2.json"
    (found,) = [message for check, message in checks.run_config_errors(config) if check == "deepspeed"]
    assert "train.deepspeed=configs/deepspeed_zero2.json: DeepSpeed 0.19.8 cannot start" in found
    installed["deepspeed"] = "0.19.7"
    assert "deepspeed" not in dict(checks.run_config_errors(config))
    del installed["deepspeed"]
    assert checks.deepspeed_version_problem() is None
    config.train.deepspeed = None
    installed["deepspeed"] = "0.19.8"
    assert "deepspeed" not in dict(checks.run_config_errors(config))  # only a DeepSpeed run is refused
