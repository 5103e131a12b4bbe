"""unet: the U-Net of Ronneberger et al. 2015 (four 2x down-sampling steps, skip connections), as
MONAI's BasicUNet (2D; batch norm, ReLU; "same" padding, so the output map has the input's size).
Input (N, C, H, W) with H, W multiples of 16 -> per-pixel logits (N, num_classes, H, W).
"""
from __future__ import annotations

from torch import nn

from ..errors import UserError
from .registry import register


@register("unet", "U-Net (Ronneberger 2015) via MONAI BasicUNet: per-pixel logits (medconv segment --mode dense)",
          listed=False)
def unet(in_channels: int, num_classes: int, input_size: tuple[int, int], features=(32, 32, 64, 128, 256, 32),
         dropout: float = 0.0) -> nn.Module:
    from monai.networks.nets import BasicUNet

    if isinstance(features, str):
        features = [int(v) for v in features.split(",")]
    if len(features) != 6:
        raise UserError(f"--arch unet: features needs 6 widths (5 levels + the last), got {list(features)}")
    if input_size[0] % 16 or input_size[1] % 16:
        raise UserError(f"--arch unet: tiles must be multiples of 16 pixels, not {input_size[0]}x{input_size[1]}")
    return BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes, features=tuple(features),
                     act="relu", norm="batch", dropout=dropout)
