"""unet: the U-Net of Ronneberger et al. 2015 (four 2x down-sampling steps, skip connections), 2D, with
batch norm, ReLU and "same" padding, so the output map has the input's size.
Input (N, C, H, W) with H, W multiples of 16 -> per-pixel logits (N, num_classes, H, W).

Written here rather than taken from MONAI (whose BasicUNet it follows layer for layer, with the same
parameter names, so checkpoints of either load into the other; tests/test_unet.py checks the outputs
agree) because importing MONAI takes seconds, which `detect predict` on one image cannot afford.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .registry import register


class ConvNormAct(nn.Module):
    """3x3 convolution, then batch norm (N), dropout (D) and ReLU (A): (N, in, H, W) -> (N, out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.adn = nn.Sequential()
        self.adn.add_module("N", nn.BatchNorm2d(out_channels))
        self.adn.add_module("D", nn.Dropout(dropout))
        self.adn.add_module("A", nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adn(self.conv(x))


class TwoConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.add_module("conv_0", ConvNormAct(in_channels, out_channels, dropout))
        self.add_module("conv_1", ConvNormAct(out_channels, out_channels, dropout))


class Down(nn.Sequential):
    """2x2 max pooling, then two convolutions: (N, in, H, W) -> (N, out, H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.add_module("max_pooling", nn.MaxPool2d(2))
        self.add_module("convs", TwoConv(in_channels, out_channels, dropout))


class UpCat(nn.Module):
    """2x transposed convolution of the deeper map, joined to the encoder's map of that size, then two
    convolutions: (N, in, H/2, W/2) and (N, skip, H, W) -> (N, out, H, W)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, dropout: float, halves: bool = True):
        super().__init__()
        up_channels = in_channels // 2 if halves else in_channels
        self.upsample = nn.Module()
        self.upsample.add_module("deconv", nn.ConvTranspose2d(in_channels, up_channels, 2, stride=2))
        self.convs = TwoConv(skip_channels + up_channels, out_channels, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([skip, self.upsample.deconv(x)], dim=1))


class UNet(nn.Module):
    """features: 6 widths, the five levels' (full resolution to 1/16) and the last block's."""

    def __init__(self, in_channels: int, num_classes: int, features=(32, 32, 64, 128, 256, 32), dropout: float = 0.0):
        super().__init__()
        f = features
        self.conv_0 = TwoConv(in_channels, f[0], dropout)
        self.down_1, self.down_2 = Down(f[0], f[1], dropout), Down(f[1], f[2], dropout)
        self.down_3, self.down_4 = Down(f[2], f[3], dropout), Down(f[3], f[4], dropout)
        self.upcat_4, self.upcat_3 = UpCat(f[4], f[3], f[3], dropout), UpCat(f[3], f[2], f[2], dropout)
        self.upcat_2 = UpCat(f[2], f[1], f[1], dropout)
        self.upcat_1 = UpCat(f[1], f[0], f[5], dropout, halves=False)
        self.final_conv = nn.Conv2d(f[5], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 16 or x.shape[-1] % 16:
            raise UserError(f"unet: input height and width must be multiples of 16, got {tuple(x.shape[-2:])}")
        x0 = self.conv_0(x)
        x1 = self.down_1(x0)
        x2 = self.down_2(x1)
        x3 = self.down_3(x2)
        x4 = self.down_4(x3)
        u = self.upcat_2(self.upcat_3(self.upcat_4(x4, x3), x2), x1)
        return self.final_conv(self.upcat_1(u, x0))


@register("unet", "U-Net (Ronneberger 2015): per-pixel logits (medconv segment --mode dense)", listed=False)
def unet(in_channels: int, num_classes: int, input_size: tuple[int, int], features=(32, 32, 64, 128, 256, 32),
         dropout: float = 0.0) -> nn.Module:
    if isinstance(features, str):
        features = [int(v) for v in features.split(",")]
    if len(features) != 6:
        raise UserError(f"--arch unet: features needs 6 widths (5 levels + the last), got {list(features)}")
    if input_size[0] % 16 or input_size[1] % 16:
        raise UserError(f"--arch unet: tiles must be multiples of 16 pixels, not {input_size[0]}x{input_size[1]}")
    return UNet(in_channels, num_classes, tuple(features), dropout)
