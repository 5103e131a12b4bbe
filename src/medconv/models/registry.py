"""Architectures by name: `build_model("resnet18", in_channels=1, num_classes=2, input_size=(28, 28))`.

As in torchvision, the registry imports no model: each model module registers its builders with
`@register`, and the package `medconv.models` imports every model module, so importing the registry
(which imports its package first) finds them all. Names it does not hold fall back to torchvision's
classification models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import UserError
from .torchvision_any import build_torchvision, torchvision_names


@dataclass
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    summary: str
    listed: bool = True  # False: built from a run's metadata only (feature-head), not a choice for --arch


REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, summary: str, listed: bool = True):
    """Decorator: add a builder `f(in_channels, num_classes, input_size, **options) -> nn.Module`."""
    def wrap(builder):
        REGISTRY[name] = ModelEntry(name, builder, summary, listed)
        return builder
    return wrap


def available() -> list[str]:
    return sorted(name for name, entry in REGISTRY.items() if entry.listed)


def build_model(name: str, in_channels: int, num_classes: int, input_size: tuple[int, int],
                **options) -> nn.Module:
    """A fresh network for inputs (N, in_channels, *input_size) and `num_classes` outputs (logits)."""
    if name not in REGISTRY:
        if name in torchvision_names():
            try:
                return build_torchvision(name, in_channels, num_classes, **options)
            except TypeError as exc:
                raise UserError(f"--arch {name}: bad model option ({exc})") from None
        raise UserError(f"unknown --arch '{name}': expected one of {', '.join(available())}, "
                        "or a torchvision classification model name (e.g. densenet121)")
    try:
        return REGISTRY[name].builder(in_channels=in_channels, num_classes=num_classes,
                                      input_size=tuple(input_size), **options)
    except TypeError as exc:
        raise UserError(f"--arch {name}: bad model option ({exc})") from None
