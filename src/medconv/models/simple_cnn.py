"""simple-cnn: conv-pool blocks, then fully connected layers."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register


class SimpleCNN(nn.Module):
    """Blocks of [conv3x3-BN-ReLU] x convs_per_block + 2x2 max-pool, then FC layers.

    Input (N, C, H, W) -> logits (N, num_classes). `widths` gives one block per entry.
    """

    def __init__(self, in_channels: int, num_classes: int, input_size: tuple[int, int],
                 widths: tuple[int, ...] = (32, 64, 128), convs_per_block: int = 2,
                 hidden: tuple[int, ...] = (256,), dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            for _ in range(convs_per_block):
                layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                c = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, *input_size)).numel()
        head: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            head += [nn.Dropout(dropout), nn.Linear(flat, h), nn.ReLU(inplace=True)]
            flat = h
        head += [nn.Dropout(dropout), nn.Linear(flat, num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("simple-cnn", "conv-pool blocks + fully connected layers (widths, convs_per_block, hidden, dropout)",
          options=("widths", "convs_per_block", "hidden", "dropout"))
def simple_cnn(in_channels: int, num_classes: int, input_size: tuple[int, int], **options) -> SimpleCNN:
    for key in ("widths", "hidden"):
        if key in options and isinstance(options[key], (list, str, int)):
            value = options[key]
            value = value.split(",") if isinstance(value, str) else [value] if isinstance(value, int) else value
            options[key] = tuple(int(v) for v in value)
    return SimpleCNN(in_channels, num_classes, input_size, **options)
