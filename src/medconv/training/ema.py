"""Exponential moving average of a network's weights (Polyak averaging), kept beside the trained network.

After each optimiser step t (1-based) every floating-point tensor of the state (weights and batch-norm
statistics) moves to ema = d * ema + (1 - d) * current, with d = min(decay, (1 + t) / (10 + t)): the
warm-up keeps the first steps' random weights from lingering. Integer buffers (batch-norm counters) are
copied. Validation and the best checkpoint then use the averaged weights, which wander less than the
last step's on a small training set. Decay 0 switches it off: the "average" is then the network itself.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..config import check_ema


def ema_decay(decay: float, step: int) -> float:
    """The averaging weight of step `step` (1-based): `decay`, lowered during the first steps."""
    return min(decay, (1 + step) / (10 + step))


class WeightAverage:
    """`model` (the network to validate and keep): a copy of the trained network whose state follows it by
    an exponential moving average, or with decay 0 the trained network itself (nothing is averaged)."""

    def __init__(self, model: nn.Module, decay: float):
        check_ema(decay)
        self.decay, self.steps = decay, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False) if decay else model

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if not self.decay:
            return
        self.steps += 1
        d = ema_decay(self.decay, self.steps)
        current = model.state_dict()
        for name, averaged in self.model.state_dict().items():
            if averaged.is_floating_point():
                averaged.mul_(d).add_(current[name].detach(), alpha=1 - d)
            else:
                averaged.copy_(current[name])

    def resumable(self) -> tuple[dict, dict[str, torch.Tensor] | None]:
        """(metadata, tensors under `ema.` names) the last checkpoint needs to resume the average."""
        if not self.decay:
            return {}, None
        return {"ema_steps": self.steps}, {f"ema.{k}": v.detach().cpu().contiguous().clone()
                                           for k, v in self.model.state_dict().items()}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Take back the average a last checkpoint (its tensors and metadata) saved."""
        if not self.decay:
            return
        self.model.load_state_dict({k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")},
                                   strict=True)
        self.steps = meta["ema_steps"]
