"""Networks for volumes (N, C, D, H, W): cnn3d (3x3x3 conv-pool blocks) and ResNet-18/50 in 3D (MONAI's)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .registry import register

SMALL_VOLUME = 32  # a side at or below this: the ResNet stem keeps the resolution (3x3x3, stride 1, no max-pool)


class CNN3D(nn.Module):
    """Blocks of [conv3x3x3-BN-ReLU] x convs_per_block + 2x2x2 max-pool, then global average pooling, dropout
    and a linear layer. Input (N, C, D, H, W) -> logits (N, num_classes). `widths` gives one block per entry.

    Deep supervision (Lee et al. 2015; Hosseini-Asl et al. 2016): `deep_supervision` holds a loss weight per block
    but the last; a block with a weight above 0 gets an auxiliary classifier (global average pooling + linear)
    whose logits (N, num_classes) are left in `self.aux_outputs` in training mode, with their weights in
    `self.aux_weights`; the trainer adds their losses. In eval mode the heads are not run: the output is the
    main head's alone.
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: tuple[int, int, int],
                 widths: tuple[int, ...] = (16, 32, 64), convs_per_block: int = 2, dropout: float = 0.3,
                 deep_supervision: tuple[float, ...] = ()):
        super().__init__()
        if len(deep_supervision) > len(widths) - 1 or any(w < 0 for w in deep_supervision):
            raise UserError(f"--model-option deep_supervision: at most {len(widths) - 1} weights of 0 or more, one "
                            f"per block but the last ({len(widths)} blocks), got {list(deep_supervision)}")
        if min(input_size) < 2 ** len(widths):
            raise UserError(f"--arch cnn3d: a {'x'.join(map(str, input_size))} volume is too small for {len(widths)} "
                            f"pooling blocks (each halves it; at least {2 ** len(widths)} voxels a side); use a larger "
                            "--size or fewer widths")
        blocks, c = [], in_channels
        for w in widths:
            layers: list[nn.Module] = []
            for _ in range(convs_per_block):
                layers += [nn.Conv3d(c, w, 3, padding=1, bias=False), nn.BatchNorm3d(w), nn.ReLU(inplace=True)]
                c = w
            blocks.append(nn.Sequential(*layers, nn.MaxPool3d(2)))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Dropout(dropout),
                                        nn.Linear(c, num_classes))
        self.heads = nn.ModuleDict({str(i): nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                                                          nn.Linear(widths[i], num_classes))
                                    for i, weight in enumerate(deep_supervision) if weight > 0})
        self.aux_weights = [float(w) for w in deep_supervision if w > 0]
        self.aux_outputs: tuple[torch.Tensor, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        aux = []
        for i, block in enumerate(self.features):
            x = block(x)
            if self.training and str(i) in self.heads:
                aux.append(self.heads[str(i)](x))
        self.aux_outputs = tuple(aux)
        return self.classifier(x)


def _ints(value) -> tuple[int, ...]:
    value = value.split(",") if isinstance(value, str) else [value] if isinstance(value, int) else value
    return tuple(int(v) for v in value)


@register("cnn3d", "3D conv-pool blocks + global average pooling (widths, convs_per_block, dropout, "
          "deep_supervision: a loss weight per block but the last)",
          options=("widths", "convs_per_block", "dropout", "deep_supervision"), dims=3)
def cnn3d(in_channels: int, num_classes: int, input_size: tuple[int, int, int], **options) -> CNN3D:
    if "widths" in options:
        options["widths"] = _ints(options["widths"])
    if "deep_supervision" in options:
        value = options["deep_supervision"]
        value = value.split(",") if isinstance(value, str) else [value] if isinstance(value, (int, float)) else value
        options["deep_supervision"] = tuple(float(v) for v in value)
    return CNN3D(in_channels, num_classes, input_size, **options)


def monai_resnet(depth: int, in_channels: int, num_classes: int, input_size: tuple[int, int, int]) -> nn.Module:
    """MONAI's 3D ResNet-`depth`; on small volumes (side <= 32) its stem keeps the resolution, as the 2D
    ResNets here do for 28 px images."""
    from monai.networks.nets import resnet18, resnet50

    small = min(input_size) <= SMALL_VOLUME
    build = {18: resnet18, 50: resnet50}[depth]
    return build(spatial_dims=3, n_input_channels=in_channels, num_classes=num_classes,
                 conv1_t_size=3 if small else 7, conv1_t_stride=1 if small else 2, no_max_pool=small)


@register("resnet18_3d", "ResNet-18 in 3D (MONAI's), stem kept at full resolution on small volumes", dims=3)
def resnet18_3d(in_channels: int, num_classes: int, input_size: tuple[int, int, int]) -> nn.Module:
    return monai_resnet(18, in_channels, num_classes, input_size)


@register("resnet50_3d", "ResNet-50 in 3D (MONAI's), stem kept at full resolution on small volumes", dims=3)
def resnet50_3d(in_channels: int, num_classes: int, input_size: tuple[int, int, int]) -> nn.Module:
    return monai_resnet(50, in_channels, num_classes, input_size)
