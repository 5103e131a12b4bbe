"""AlexNet and Inception v3 from torchvision, adapted to any channel count, class count and (AlexNet) small inputs.

GoogLeNet lives in googlenet.py (the paper's, plus torchvision's as `googlenet-torchvision`); ResNets in resnet.py.
"""
from __future__ import annotations

from torch import nn

from ..errors import UserError
from .registry import register

ALEXNET_SMALL_INPUT = 64  # at or below this (smallest side), AlexNet's small-input stem
INCEPTION_MIN_INPUT = 75  # torchvision's minimum for Inception v3


@register("alexnet", f"torchvision AlexNet; 3x3 stride-1 first conv and no first max-pool for inputs <= "
                     f"{ALEXNET_SMALL_INPUT} px")
def alexnet(in_channels: int, num_classes: int, input_size: tuple[int, int], dropout: float = 0.5) -> nn.Module:
    """torchvision's AlexNet (N, C, H, W) -> (N, num_classes); at 3 channels and > 64 px exactly torchvision's
    (61,100,840 parameters for 1000 classes).

    The original stem (11x11 stride-4 conv, then three 3x3/2 max-pools) needs at least 63 px and leaves 1x1
    maps at 64 px. For inputs whose smallest side is <= 64 px (MedMNIST 28/64), `features[0]` becomes a 3x3
    stride-1 conv (64 filters, padding 1) and the first max-pool (`features[2]`) is dropped; the other two
    max-pools stay, so 28 px gives 28 -> 13 -> 6 maps and 64 px 64 -> 31 -> 15 (then the usual adaptive
    6x6 average pool). Only conv1's parameter count changes (64 x C x 9 + 64 instead of 64 x C x 121 + 64).
    With other channel counts at larger sizes, only the 11x11/4 conv's input channels change.
    """
    import torchvision  # here, not at import: `medconv` starts faster without it

    model = torchvision.models.alexnet(weights=None, num_classes=num_classes, dropout=dropout)
    if min(input_size) <= ALEXNET_SMALL_INPUT:
        model.features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1)
        model.features[2] = nn.Identity()
    elif in_channels != 3:
        model.features[0] = nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2)
    return model


def _mixed_6e_size(size: int) -> int:
    """Side of the 17x17 (at 299 px) maps Inception v3's auxiliary head reads."""
    half = lambda s: (s - 3) // 2 + 1  # 3x3 stride 2, no padding
    return half(half(half(half(size) - 2) - 2))


@register("inception_v3", "torchvision Inception v3 (aux_logits option, default off); native 299 px, minimum 75 px")
def inception_v3(in_channels: int, num_classes: int, input_size: tuple[int, int],
                 aux_logits: bool = False, dropout: float = 0.5) -> nn.Module:
    """torchvision's Inception v3 (transform_input=False, init_weights=True), input (N, C, H, W) -> (N, num_classes).

    `Conv2d_1a_3x3` is rebuilt for `in_channels` when that is not 3 (same truncated-normal init). Native input
    299x299; it cannot run below 75 px (raises UserError: resize to 299). The auxiliary head (after Mixed_6e:
    5x5/3 pool, then a 5x5 conv) needs 17x17 maps there, i.e. inputs of at least 299 px (UserError below).
    Parameters at 3 channels, 1000 classes, no aux head: 23,834,568 (torchvision's 27,161,264 includes the
    aux head's 3,326,696).
    """
    if min(input_size) < INCEPTION_MIN_INPUT:
        raise UserError(f"--arch inception_v3: input {input_size[0]}x{input_size[1]} is below its minimum of "
                        f"{INCEPTION_MIN_INPUT}x{INCEPTION_MIN_INPUT}; use --resize 299 (its native size)")
    if aux_logits and _mixed_6e_size(min(input_size)) < 17:
        raise UserError(f"--arch inception_v3: aux_logits needs inputs of at least 299 px, not "
                        f"{input_size[0]}x{input_size[1]}; use --resize 299 or aux_logits=false")
    from torchvision.models.inception import BasicConv2d

    from .inception import InceptionV3

    model = InceptionV3(num_classes=num_classes, aux_logits=bool(aux_logits), transform_input=False,
                        init_weights=True, dropout=dropout)
    if in_channels != 3:
        model.Conv2d_1a_3x3 = BasicConv2d(in_channels, 32, kernel_size=3, stride=2)
        nn.init.trunc_normal_(model.Conv2d_1a_3x3.conv.weight, mean=0.0, std=0.1, a=-2, b=2)
    return model
