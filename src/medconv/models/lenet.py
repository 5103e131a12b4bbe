"""LeNet-5 (LeCun et al. 1998): C1-S2-C3-S4-C5-F6-output on 32x32 inputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register

# Table I of LeCun et al. 1998: the S2 maps (0-5) each C3 map (0-15) takes as input.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),                 # 3 contiguous maps
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),  # 4 contiguous
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),                                          # 4 non-contiguous
    (0, 1, 2, 3, 4, 5),                                                                # all 6
)


class MaskedConv2d(nn.Conv2d):
    """A convolution whose weight is multiplied by a fixed 0/1 `mask` (out, in, 1, 1) in every forward pass.

    Masked entries take no part in the output, so their gradient is zero; they are zeroed at construction
    and stay zero under SGD/Adam (with or without weight decay).
    """

    def __init__(self, mask: torch.Tensor, kernel_size, **kwargs):
        out_channels, in_channels = mask.shape
        super().__init__(in_channels, out_channels, kernel_size, **kwargs)
        # not persistent: the mask follows from the architecture options, so the state dict keeps the same keys
        self.register_buffer("mask", mask.to(self.weight.dtype)[:, :, None, None], persistent=False)
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

    def masked_out(self) -> int:
        """Number of weight entries the mask removes."""
        return int((self.mask == 0).sum()) * self.kernel_size[0] * self.kernel_size[1]


def c3_mask() -> torch.Tensor:
    """(16, 6) 0/1 matrix: mask[j, i] = 1 when C3 map j is connected to S2 map i (60 connections)."""
    mask = torch.zeros(16, 6)
    for j, inputs in enumerate(C3_TABLE):
        mask[j, list(inputs)] = 1
    return mask


class LeNet5(nn.Module):
    """Input (N, C, H, W) -> logits (N, num_classes).

    Inputs smaller than 32x32 are zero-padded to 32x32, as LeCun padded 28x28 digits.
    C1: 6 maps 5x5, S2: 2x2 average subsampling, C3: 16 maps 5x5, S4: 2x2 subsampling, C5: 120 maps whose
    kernel covers all of S4 (5x5 at 32 px), F6: 84 units, tanh activations.

    `c3_table=False`: C3 is fully connected to the 6 S2 maps (2,416 parameters).
    `c3_table=True`: C3 follows LeCun's Table I (`C3_TABLE`): maps 0-5 see 3 contiguous S2 maps, 6-11 see 4
    contiguous, 12-14 see 4 non-contiguous, 15 sees all 6: 60 connections x 25 weights + 16 biases = 1,516
    parameters, implemented as a masked 6->16 convolution.

    Parameter counts for 1 input channel, 10 classes, 32x32 (C1 156 + C3 + C5 48,120 + F6 10,164 + output 850):
    full C3: 61,706 (`sum(p.numel())` and `effective_parameters()` agree);
    C3 table: `effective_parameters()` = 60,806, while `sum(p.numel() for p in model.parameters())` still
    reports 61,706, because C3's weight tensor keeps its 900 masked (always-zero) entries.
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: tuple[int, int], c3_table: bool = False):
        super().__init__()
        self.input_size = tuple(max(s, 32) for s in input_size)
        h, w = (((s - 4) // 2 - 4) // 2 for s in self.input_size)  # S4's size: C5's kernel
        self.c1 = nn.Conv2d(in_channels, 6, 5)
        self.s2 = nn.AvgPool2d(2)
        self.c3 = MaskedConv2d(c3_mask(), 5) if c3_table else nn.Conv2d(6, 16, 5)
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

    def effective_parameters(self) -> int:
        """Trainable parameters that can affect the output: all of them, less C3's masked weight entries."""
        total = sum(p.numel() for p in self.parameters())
        return total - (self.c3.masked_out() if isinstance(self.c3, MaskedConv2d) else 0)


@register("lenet5", "LeNet-5 (LeCun 1998), tanh, average subsampling, inputs padded to 32x32; "
                    "c3_table=true for LeCun's partial C3 connections")
def lenet5(in_channels: int, num_classes: int, input_size: tuple[int, int], c3_table: bool = False) -> LeNet5:
    return LeNet5(in_channels, num_classes, input_size, c3_table=bool(c3_table))
