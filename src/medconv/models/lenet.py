"""LeNet-5 (LeCun et al. 1998): C1-S2-C3-S4-C5-F6-output on 32x32 inputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register


class LeNet5(nn.Module):
    """Input (N, C, H, W) -> logits (N, num_classes).

    Inputs smaller than 32x32 are zero-padded to 32x32, as LeCun padded 28x28 digits.
    C1: 6 maps 5x5, S2: 2x2 average subsampling, C3: 16 maps 5x5 (fully connected to S2 here),
    S4: 2x2 subsampling, C5: 120 maps whose kernel covers all of S4 (5x5 at 32 px), F6: 84 units,
    tanh activations. 61,706 parameters for 1 input channel and 10 classes at 32x32.
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: tuple[int, int]):
        super().__init__()
        self.input_size = tuple(max(s, 32) for s in input_size)
        h, w = (((s - 4) // 2 - 4) // 2 for s in self.input_size)  # S4's size: C5's kernel
        self.c1 = nn.Conv2d(in_channels, 6, 5)
        self.s2 = nn.AvgPool2d(2)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.s4 = nn.AvgPool2d(2)
        self.c5 = nn.Conv2d(16, 120, (h, w))
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dh, dw = self.input_size[0] - x.shape[-2], self.input_size[1] - x.shape[-1]
        if dh > 0 or dw > 0:
            x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
        x = self.s2(torch.tanh(self.c1(x)))
        x = self.s4(torch.tanh(self.c3(x)))
        x = torch.tanh(self.c5(x)).flatten(1)
        return self.output(torch.tanh(self.f6(x)))


@register("lenet5", "LeNet-5 (LeCun 1998), tanh, average subsampling, inputs padded to 32x32")
def lenet5(in_channels: int, num_classes: int, input_size: tuple[int, int]) -> LeNet5:
    return LeNet5(in_channels, num_classes, input_size)
