"""Architectures by name: `build_model("resnet18", in_channels=1, num_classes=2, input_size=(28, 28))`.

As in torchvision, the registry imports no model: each model module registers its builders with
`@register`, and the package `medconv.models` imports every model module, so importing the registry
(which imports its package first) finds them all. Names it does not hold fall back to torchvision's
classification models.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ..config import MODEL_OPTIONS, check_model_option
from ..errors import UserError
from .torchvision_any import build_torchvision, torchvision_names


@dataclass
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    summary: str
    listed: bool = True  # False: built from a run's metadata only (feature-head), not a choice for --arch
    options: dict[str, tuple | None] = field(default_factory=dict)  # the options it takes -> (kind, wanted)
    dims: int = 2  # spatial dimensions of its input: 2 (N, C, H, W) or 3 (N, C, D, H, W)


def builder_options(builder: Callable, names: tuple[str, ...] | dict | None) -> dict[str, tuple | None]:
    """The options a builder takes and their kinds (None: not checked): `names` where the builder takes
    **options, else its keyword parameters past (in_channels, num_classes, input_size)."""
    if isinstance(names, dict):
        return dict(names)
    if names is None:
        parameters = list(inspect.signature(builder).parameters.values())[3:]
        names = tuple(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return {name: MODEL_OPTIONS.get(name) for name in names}


REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, summary: str, listed: bool = True, options: tuple[str, ...] | dict | None = None,
             dims: int = 2):
    """Decorator: add a builder `f(in_channels, num_classes, input_size, **options) -> nn.Module`. `options`:
    the option names it takes when it takes **options (default: its keyword parameters), or a table of
    name -> (kind, wanted) or None, for options whose kind differs from config.MODEL_OPTIONS'. `dims`: 2 for
    images, 3 for volumes."""
    def wrap(builder):
        REGISTRY[name] = ModelEntry(name, builder, summary, listed, builder_options(builder, options), dims)
        return builder
    return wrap


def entry(name: str) -> ModelEntry | None:
    """The registry's entry of --arch `name`; None for a torchvision name; UserError for neither."""
    if name in REGISTRY:
        return REGISTRY[name]
    if isinstance(name, str) and name in torchvision_names():
        return None
    raise UserError(f"unknown --arch '{name}': expected one of {', '.join(available())}, "
                    "or a torchvision classification model name (e.g. densenet121)")


def check_arch_options(name: str, options: dict) -> None:
    """--arch `name` and its options, before anything is built: unknown names, unknown options and values of
    the wrong kind are one clear line each (config.check_model_options checks the values alone, torch-free,
    when a configuration is validated). Options of torchvision's own models are left to torchvision."""
    found = entry(name)
    if not isinstance(options, dict):
        raise UserError(f"model options of --arch {name}: expected a mapping of KEY: VALUE, got {options!r}")
    if found is None:  # torchvision's: its own checks
        return
    for key, value in options.items():
        if key not in found.options:
            takes = ", ".join(found.options) or "none"
            raise UserError(f"--model-option {key}: not an option of --arch {name} (its options: {takes})")
        check_model_option(name, key, value, found.options[key])


def check_dims(name: str, input_size: tuple[int, ...]) -> None:
    """Refuse volumes for a 2D network and 2D images for a 3D one, in one line."""
    found = REGISTRY.get(name)
    dims = found.dims if found is not None else 2
    if len(input_size) == dims:
        return
    shape = "x".join(map(str, input_size))
    if len(input_size) == 3:
        volume_nets = ", ".join(n for n, e in sorted(REGISTRY.items()) if e.dims == 3 and e.listed)
        raise UserError(f"--arch {name} is a 2D network but the data are volumes ({shape}); use a 3D one: {volume_nets}")
    raise UserError(f"--arch {name} takes volumes (D, H, W) but the data are 2D images ({shape}); use a 2D network")


def available() -> list[str]:
    return sorted(name for name, entry in REGISTRY.items() if entry.listed)


def build_model(name: str, in_channels: int, num_classes: int, input_size: tuple[int, int],
                **options) -> nn.Module:
    """A fresh network for inputs (N, in_channels, *input_size) and `num_classes` outputs (logits); its options
    checked first (check_arch_options), and the input's dimensions against the network's (check_dims)."""
    check_arch_options(name, options)
    check_dims(name, tuple(input_size))
    if name not in REGISTRY:
        try:
            return build_torchvision(name, in_channels, num_classes, **options)
        except (TypeError, ValueError) as exc:
            raise UserError(f"--arch {name}: bad model option ({' '.join(str(exc).split())})") from None
    try:
        return REGISTRY[name].builder(in_channels=in_channels, num_classes=num_classes,
                                      input_size=tuple(input_size), **options)
    except TypeError as exc:
        raise UserError(f"--arch {name}: bad model option ({exc})") from None
