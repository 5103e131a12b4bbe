"""Networks for volumes (N, C, D, H, W): cnn3d (3x3x3 conv-pool blocks), its Hosseini-Asl layout
(hosseini_asl_3d), and ResNet-18/50 in 3D (MONAI's)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError
from .registry import register

SMALL_VOLUME = 32  # a side at or below this: the ResNet stem keeps the resolution (3x3x3, stride 1, no max-pool)


class CNN3D(nn.Module):
    """Blocks of [conv3x3x3-BN-ReLU] x convs_per_block + 2x2x2 max-pool, then global average pooling, dropout
    and a linear layer. Input (N, C, D, H, W) -> logits (N, num_classes). `widths` gives one block per entry.
    With `hidden` (units per layer), the last block's maps are flattened instead and go through fully connected
    ReLU layers with dropout (the upper layers Hosseini-Asl et al. fine-tune on the target task).

    Deep supervision (Lee et al. 2015; Hosseini-Asl et al. 2016): `deep_supervision` holds a loss weight per block
    but the last; a block with a weight above 0 gets an auxiliary classifier (global average pooling + linear)
    whose logits (N, num_classes) are left in `self.aux_outputs` in training mode, with their weights in
    `self.aux_weights`; the trainer adds their losses. In eval mode the heads are not run: the output is the
    main head's alone.
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: tuple[int, int, int],
                 widths: tuple[int, ...] = (16, 32, 64), convs_per_block: int = 2, dropout: float = 0.3,
                 deep_supervision: tuple[float, ...] = (), hidden: tuple[int, ...] = ()):
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
        upper: list[nn.Module] = [nn.AdaptiveAvgPool3d(1), nn.Flatten()]
        if hidden:
            c *= math.prod(side // 2 ** len(widths) for side in input_size)
            upper = [nn.Flatten()]
            for units in hidden:
                upper += [nn.Dropout(dropout), nn.Linear(c, units), nn.ReLU(inplace=True)]
                c = units
        self.classifier = nn.Sequential(*upper, nn.Dropout(dropout), nn.Linear(c, num_classes))
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
    """"16,32" or 16 or [16, 32] -> (16, 32)."""
    value = value.split(",") if isinstance(value, str) else [value] if isinstance(value, int) else value
    return tuple(int(v) for v in value)


@register("cnn3d", "3D conv-pool blocks + global average pooling (widths, convs_per_block, dropout, "
          "deep_supervision: a loss weight per block but the last)",
          options=("widths", "convs_per_block", "dropout", "deep_supervision", "hidden"), dims=3)
def cnn3d(in_channels: int, num_classes: int, input_size: tuple[int, int, int], **options) -> CNN3D:
    for key in ("widths", "hidden"):
        if key in options:
            options[key] = _ints(options[key])
    if "deep_supervision" in options:
        value = options["deep_supervision"]
        value = value.split(",") if isinstance(value, str) else [value] if isinstance(value, (int, float)) else value
        options["deep_supervision"] = tuple(float(v) for v in value)
    return CNN3D(in_channels, num_classes, input_size, **options)


HOSSEINI_ASL = {"widths": (8, 8, 8), "convs_per_block": 1, "hidden": (256, 64), "dropout": 0.3}


@register("hosseini_asl_3d", "the layout of Hosseini-Asl et al. 2016: three blocks of one 3x3x3 convolution + "
          "max-pool (the layers a 3D convolutional autoencoder pretrains, --pretrain cae) under fully connected "
          "layers (widths, convs_per_block, dropout, deep_supervision, hidden)",
          options=("widths", "convs_per_block", "dropout", "deep_supervision", "hidden"), dims=3)
def hosseini_asl_3d(in_channels: int, num_classes: int, input_size: tuple[int, int, int], **options) -> CNN3D:
    """cnn3d with HOSSEINI_ASL's settings unless `options` says otherwise. Their layer counts; the widths are
    ours, sized for 28-64 voxel inputs rather than the paper's whole-brain MRIs."""
    return cnn3d(in_channels, num_classes, input_size, **{**HOSSEINI_ASL, **options})


def monai_resnet(depth: int, in_channels: int, num_classes: int, input_size: tuple[int, int, int],
                 stem_stride: int | None = None) -> nn.Module:
    """MONAI's 3D ResNet-`depth`. `stem_stride` 1 keeps the resolution in the stem (3x3x3 convolution, no
    max-pool), as the 2D ResNets here do for 28 px images; 2 halves it (7x7x7 stride 2 and a max-pool from 33
    voxels a side up). Default: 1 on small volumes (side <= 32), else 2. At 28^3 the full-resolution stem costs
    about 8x the compute of the halved one."""
    from monai.networks.nets import resnet18, resnet50

    if stem_stride not in (None, 1, 2):
        raise UserError(f"--model-option stem_stride: 1 (full resolution) or 2 (halved), got {stem_stride}")
    small = min(input_size) <= SMALL_VOLUME
    stride = stem_stride or (1 if small else 2)
    build = {18: resnet18, 50: resnet50}[depth]
    return build(spatial_dims=3, n_input_channels=in_channels, num_classes=num_classes,
                 conv1_t_size=3 if small else 7, conv1_t_stride=stride, no_max_pool=small)


@register("resnet18_3d", "ResNet-18 in 3D (MONAI's), stem kept at full resolution on small volumes (stem_stride)",
          options=("stem_stride",), dims=3)
def resnet18_3d(in_channels: int, num_classes: int, input_size: tuple[int, int, int], **options) -> nn.Module:
    return monai_resnet(18, in_channels, num_classes, input_size, **options)


@register("resnet50_3d", "ResNet-50 in 3D (MONAI's), stem kept at full resolution on small volumes (stem_stride)",
          options=("stem_stride",), dims=3)
def resnet50_3d(in_channels: int, num_classes: int, input_size: tuple[int, int, int], **options) -> nn.Module:
    return monai_resnet(50, in_channels, num_classes, input_size, **options)
