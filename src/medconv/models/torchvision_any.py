"""Any torchvision classification model by name (densenet121, efficientnet_b0, convnext_tiny, ...) as a
backbone, for the architectures medconv does not adapt itself: torchvision's network with `num_classes`
outputs and, for inputs that are not RGB, its first convolution rebuilt for `in_channels`."""
from __future__ import annotations

import torchvision
from torch import nn

from ..errors import UserError


def torchvision_names() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def build_torchvision(name: str, in_channels: int, num_classes: int, **options) -> nn.Module:
    """torchvision.models.get_model(name, num_classes=...) with its first Conv2d taking `in_channels`."""
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options)
    if in_channels != 3:
        path, conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
        if conv is None:
            raise UserError(f"--arch {name}: no convolution to adapt to {in_channels} input channels")
        parent = model.get_submodule(path.rsplit(".", 1)[0]) if "." in path else model
        setattr(parent, path.rsplit(".", 1)[-1], nn.Conv2d(
            in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups,
            conv.bias is not None, conv.padding_mode))
    return model
