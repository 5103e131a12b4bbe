"""ResNets from torchvision (18, 34, 50, 101 layers), adapted to any channel count and to small (28-64 px) inputs.

At 3 channels and inputs above 64 px the network is exactly torchvision's (1000 classes: ResNet-18 11,689,512,
ResNet-34 21,797,672, ResNet-50 25,557,032, ResNet-101 44,549,160 parameters).
"""
from __future__ import annotations

from torch import nn

from .registry import register

SMALL_INPUT = 64  # at or below this size, use the 3x3 stride-1 stem without max-pool


def adapt_resnet(model: nn.Module, in_channels: int, input_size: tuple[int, int]) -> nn.Module:
    """Replace the stem: 3x3 stride-1 conv and no max-pool for small inputs (MedMNIST's "(28)" models,
    which keep 28x28 maps in the first stage); otherwise the 7x7 stride-2 stem for `in_channels`."""
    if min(input_size) <= SMALL_INPUT:
        model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    return model


def _builder(name: str, depth_name: str):
    @register(name, f"torchvision {depth_name}; 3x3 stride-1 stem without max-pool for inputs <= {SMALL_INPUT} px")
    def build(in_channels: int, num_classes: int, input_size: tuple[int, int]) -> nn.Module:
        import torchvision  # here, not at import: `medconv` starts faster without it

        model = getattr(torchvision.models, depth_name)(weights=None, num_classes=num_classes)
        return adapt_resnet(model, in_channels, input_size)
    return build


resnet18 = _builder("resnet18", "resnet18")
resnet34 = _builder("resnet34", "resnet34")
resnet50 = _builder("resnet50", "resnet50")
resnet101 = _builder("resnet101", "resnet101")
