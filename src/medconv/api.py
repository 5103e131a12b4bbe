"""Lazy public names for package `__init__` files: a name is imported from its module on first use.

`import medconv` (and `medconv.detect`, whose ONNX path runs without torch) must not import torch or
every model; PEP 562's module `__getattr__` gives the same names as eager imports without that cost.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_names(package: str, names: dict[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` that imports `names[attr]` (a module path relative to `package`) on first use."""
    def attribute(attr: str):
        if attr not in names:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        return getattr(importlib.import_module(names[attr], package), attr)
    return attribute
