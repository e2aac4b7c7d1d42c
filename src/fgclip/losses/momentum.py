"""A momentum (EMA, MoCo-style) copy of the model's region image path, for the memory bank's image side.

    shadow = m * shadow + (1 - m) * online        once per optimizer step, for vision_model.* and roi_projection.*

The banked region image embeddings then come from a slowly moving encoder, so entries written many steps
apart stay comparable (MoCo's argument), while the in-batch features and every gradient stay the online
model's. The shadow weights are buffers of the bank (`memory_bank.momentum_encoder.*` in a checkpoint), so a
resumed run continues with the same shadow and a run started from a saved model gets a fresh one (bank keys
are never loaded into a new run). It runs the online model's own forward with the shadow weights put in
place (`torch.func.functional_call`), image inputs only, under no_grad: the region path is the model's code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

PARTS = ("vision_model.", "roi_projection.")  # what produces region image embeddings
IMAGE_INPUTS = ("pixel_values", "frame_mask", "region_boxes", "region_box_mask", "region_valid")


class MomentumEncoder(nn.Module):
    def __init__(self, model: nn.Module, momentum: float):
        """`model`: the bare FGCLIPModel (no DDP / peft wrapper); its current weights start the shadow."""
        super().__init__()
        self.momentum = momentum
        self._names: dict[str, str] = {}  # buffer name -> model parameter name
        for name, parameter in model.named_parameters():
            if name.startswith(PARTS):
                buffer = name.replace(".", "__")  # a buffer name may not contain "."
                self.register_buffer(buffer, parameter.detach().clone())
                self._names[buffer] = name
        if not self._names:
            raise ValueError("bank.momentum: the model has no vision_model / roi_projection parameters")
        # optimizer steps whose result the shadow holds; it starts as the weights of `updated_at` steps
        self.register_buffer("updated_at", torch.zeros((), dtype=torch.long))

    def shadow(self) -> dict[str, torch.Tensor]:
        """{model parameter name: shadow weight}."""
        return {name: getattr(self, buffer) for buffer, name in self._names.items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> bool:
        """Fold in the online weights once per optimizer step: at the first call that sees `step` advanced.

        Lazy (at the start of the next training forward rather than in an optimizer hook): the task needs no
        trainer callback, every loop that trains through the task gets the same EMA, and `updated_at` is
        saved with the bank, so a resumed run updates at exactly the calls a straight run does.
        """
        if step <= int(self.updated_at):
            return False
        online = dict(model.named_parameters())
        for name, shadow in self.shadow().items():
            shadow.mul_(self.momentum).add_(online[name].detach().to(shadow.dtype), alpha=1 - self.momentum)
        self.updated_at.fill_(step)
        return True

    @torch.no_grad()
    def region_embeds(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """(M, D) normalised region image embeddings of `batch` from the shadow weights (eval mode)."""
        inputs = {key: batch[key] for key in IMAGE_INPUTS if key in batch}
        was_training = model.training
        model.eval()
        try:
            features = functional_call(model, self.shadow(), args=(), kwargs=inputs, strict=False)
        finally:
            model.train(was_training)
        return features["region_embeds"]
