"""An exponential moving average of a model's weights, updated on the weights' own device.

Sampling uses the EMA weights: they are the mean of the late training trajectory and draw
cleaner digits than the raw weights. The average is one fused ``_foreach_lerp_`` over the
parameters with a Python float weight, under ``no_grad``: no tensor crosses between host and
device, so an update never makes the host wait for the GPU. (``torch.optim.swa_utils.
AveragedModel``, used before, keeps its update count in a device tensor and branches on it,
a blocking copy every step.) The count lives on the host as a plain int.

The state dict keeps AveragedModel's layout (``module.<name>`` and ``n_averaged``), so
checkpoints written before and after this class load in both.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module):
        self.module = copy.deepcopy(model)
        self.module.eval()
        self.module.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        """Move every averaged parameter ``1 - decay`` of the way to the model's. The first
        update copies the model outright (as AveragedModel did), so the average starts from
        trained weights rather than the initialisation."""
        mine = list(self.module.parameters())
        theirs = [p.detach() for p in model.parameters()]
        if self.updates == 0:
            torch._foreach_copy_(mine, theirs)
        else:
            torch._foreach_lerp_(mine, theirs, 1.0 - float(decay))
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"module.{k}": v for k, v in self.module.state_dict().items()}
        state["n_averaged"] = torch.tensor(self.updates, dtype=torch.long)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        weights = {k.removeprefix("module."): v for k, v in state.items() if k.startswith("module.")}
        self.module.load_state_dict(weights)
        self.updates = int(state["n_averaged"]) if "n_averaged" in state else 1


def ema_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model weights inside an EMA state dict (for sampling from a checkpoint)."""
    return {k.removeprefix("module."): v for k, v in state.items() if k.startswith("module.")}
