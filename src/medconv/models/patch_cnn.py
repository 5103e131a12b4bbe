"""patch-cnn: a patch classifier in the spirit of Ciresan et al. 2012 (EM membranes): valid (unpadded)
convolutions and pooling, then fully connected layers, labelling the centre pixel of an odd-sized patch.

Only valid convolutions, pooling, point-wise layers and fully connected layers: so the network can be
rewritten exactly as a fully convolutional one (medconv.infer.dense) that labels every pixel at once.
Default: up to four blocks of 48 maps (kernels 5, 4, 4, 4), as many as the patch allows, as Ciresan's
nets. For a 65 px patch: 65 -conv5-> 61 -pool-> 30 -conv4-> 27 -pool-> 13 -conv4-> 10 -pool-> 5 -conv4-> 2
-pool-> 1, then 48 -> 200 -> classes; a 33 px patch keeps three blocks (33 -> 29 -> 14 -> 11 -> 5 -> 2 -> 1).
Most of the work is in the convolutions, which is what dense scanning shares between neighbouring pixels.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .registry import register


class PatchCNN(nn.Module):
    """(N, C, P, P) patches -> (N, num_classes) logits of their centre pixels."""

    def __init__(self, in_channels: int, num_classes: int, input_size: tuple[int, int], widths=(48, 48, 48), kernels=(5, 4, 4),
                 pool: str = "max", pool_kernel: int = 2, hidden=(200,), dropout: float = 0.3, batch_norm: bool = True):
        super().__init__()
        if len(widths) != len(kernels):
            raise UserError(f"--arch patch-cnn: {len(widths)} widths but {len(kernels)} kernels")
        if pool not in ("max", "avg"):
            raise UserError(f"--arch patch-cnn: pool {pool!r}: expected max or avg")
        layers: list[nn.Module] = []
        c = in_channels
        for w, k in zip(widths, kernels):
            layers += [nn.Conv2d(c, w, int(k), bias=not batch_norm)]
            layers += [nn.BatchNorm2d(w)] if batch_norm else []
            layers += [nn.ReLU(inplace=True),
                       (nn.MaxPool2d if pool == "max" else nn.AvgPool2d)(int(pool_kernel), stride=2)]
            c = w
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            try:  # in eval mode: batch norm on one 1x1 trial patch would refuse to take its statistics
                shape = self.features.eval()(torch.zeros(1, in_channels, *input_size)).shape
            except RuntimeError:
                shape = (0, 0, 0, 0)
            self.features.train()
        if min(shape[2:]) < 1:
            raise UserError(f"--arch patch-cnn: a {input_size[0]}x{input_size[1]} patch is too small for {len(widths)} conv-pool blocks "
                            f"with kernels {list(kernels)}; use a larger --patch or fewer blocks")
        flat = shape[1] * shape[2] * shape[3]
        head: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            head += [nn.Linear(flat, int(h)), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            flat = int(h)
        head += [nn.Linear(flat, num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def default_blocks(patch: int, pool_kernel: int = 2) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """As many of the default blocks (48 maps; kernels 5, 4, 4, 4) as leave at least a 1x1 map."""
    kernels, size = [], patch
    for k in (5, 4, 4, 4):
        after = (size - k + 1 - pool_kernel) // 2 + 1
        if after < 1:
            break
        kernels.append(k)
        size = after
    return (48,) * len(kernels), tuple(kernels)


def _ints(value) -> tuple[int, ...]:
    if isinstance(value, str):
        return tuple(int(v) for v in value.split(","))
    return (int(value),) if isinstance(value, int) else tuple(int(v) for v in value)


@register("patch-cnn", "patch classifier (Ciresan 2012): valid conv + pool blocks, then FC; exact dense scanning "
                       "(widths, kernels, pool=max|avg, pool_kernel, hidden, dropout, batch_norm)",
          options=("widths", "kernels", "pool", "pool_kernel", "hidden", "dropout", "batch_norm"))
def patch_cnn(in_channels: int, num_classes: int, input_size: tuple[int, int], **options) -> PatchCNN:
    for key in ("widths", "kernels", "hidden"):
        if key in options:
            options[key] = _ints(options[key])
    if "widths" not in options and "kernels" not in options:
        options["widths"], options["kernels"] = default_blocks(min(input_size), options.get("pool_kernel", 2))
    return PatchCNN(in_channels, num_classes, tuple(input_size), **options)
