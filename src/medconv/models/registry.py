"""Architectures by name: `build_model("resnet18", in_channels=1, num_classes=2, input_size=(28, 28))`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..errors import UserError


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
    _load_all()
    return sorted(name for name, entry in REGISTRY.items() if entry.listed)


def build_model(name: str, in_channels: int, num_classes: int, input_size: tuple[int, int],
                **options) -> nn.Module:
    """A fresh network for inputs (N, in_channels, *input_size) and `num_classes` outputs (logits)."""
    _load_all()
    if name not in REGISTRY:
        from .torchvision_any import build_torchvision, torchvision_names
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


def _load_all() -> None:
    from ..transfer import heads  # noqa: F401  (feature-head: a frozen backbone + a fitted head)
    from . import classic, googlenet, lenet, mlp, patch_cnn, resnet, simple_cnn, unet  # noqa: F401  (modules register themselves)
