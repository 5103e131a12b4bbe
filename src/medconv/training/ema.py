"""Exponential moving average of a network's weights (Polyak averaging), kept beside the trained network.

After each optimiser step t (1-based) every floating-point tensor of the state (weights and batch-norm
statistics) moves to ema = d * ema + (1 - d) * current, with d = min(decay, (1 + t) / (10 + t)): the
warm-up keeps the first steps' random weights from lingering. Integer buffers (batch-norm counters) are
copied. Validation and the best checkpoint then use the averaged weights, which wander less than the
last step's on a small training set.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(decay: float, step: int) -> float:
    """The averaging weight of step `step` (1-based): `decay`, lowered during the first steps."""
    return min(decay, (1 + step) / (10 + step))


class WeightAverage:
    """A copy of `model` whose state follows the model's by an exponential moving average."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.steps = decay, 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        d = ema_decay(self.decay, self.steps)
        current = model.state_dict()
        for name, averaged in self.model.state_dict().items():
            if averaged.is_floating_point():
                averaged.mul_(d).add_(current[name].detach(), alpha=1 - d)
            else:
                averaged.copy_(current[name])

    def tensors(self) -> dict[str, torch.Tensor]:
        """The averaged state under `ema.` names, for the resumable checkpoint."""
        return {f"ema.{k}": v.detach().cpu().contiguous().clone() for k, v in self.model.state_dict().items()}

    def restore(self, tensors: dict[str, torch.Tensor], steps: int) -> None:
        """Take back the state saved by `tensors` after `steps` updates."""
        state = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")}
        self.model.load_state_dict(state, strict=True)
        self.steps = steps


def weight_average(model: nn.Module, decay: float) -> WeightAverage | None:
    """A WeightAverage of `model` with `decay` (a config's `ema`), or None when it is 0 (off)."""
    return WeightAverage(model, decay) if decay > 0 else None


def resumable_parts(average: WeightAverage | None) -> tuple[dict, dict[str, torch.Tensor] | None]:
    """(metadata, tensors) the last checkpoint needs to resume `average`: ({}, None) without one."""
    return ({}, None) if average is None else ({"ema_steps": average.steps}, average.tensors())
