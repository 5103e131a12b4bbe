"""unet3d: MONAI's residual 3D U-Net (Kerfoot et al. 2018's UNet: strided-convolution down-sampling, residual
units, transposed-convolution up-sampling, skip connections). Input (N, C, D, H, W), each side a multiple of 2 ** (number
of widths - 1) -> per-voxel logits (N, num_classes, D, H, W)."""
from __future__ import annotations

from torch import nn

from ..errors import UserError
from .registry import register

WIDTHS = (16, 32, 64, 128)


@register("unet3d", "3D U-Net for volumes (MONAI's UNet with residual units; widths, dropout)",
          options=("widths", "dropout"), dims=3)
def unet3d(in_channels: int, num_classes: int, input_size: tuple[int, int, int],
           widths: tuple[int, ...] | list[int] = WIDTHS, dropout: float = 0.0) -> nn.Module:
    from monai.networks.nets import UNet

    widths = tuple(int(w) for w in (widths.split(",") if isinstance(widths, str) else widths))
    if len(widths) < 2:
        raise UserError(f"--model-option widths of unet3d: at least two levels, got {list(widths)}")
    step = 2 ** (len(widths) - 1)
    if any(side % step for side in input_size):
        raise UserError(f"--arch unet3d: a {'x'.join(map(str, input_size))} input does not halve {len(widths) - 1} "
                        f"times; each side must be a multiple of {step}")
    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=num_classes, channels=widths,
                strides=(2,) * (len(widths) - 1), num_res_units=2, dropout=dropout)
