"""The in-memory form every dataset loader returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are made, so that reading images does not need it
    import torch


def unit_float(x: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [0, 1]: uint8 divided by 255, float images as they are."""
    import torch

    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


@dataclass
class ImageSet:
    """Images and labels of one split, held in memory.

    images: (N, C, H, W), uint8 (0-255) or float32 (0-1).
    labels: (N, L) int64; L = 1 (class index) except for multi-label tasks (L = label count, 0/1).
    paths:  optional source file of each image (folder datasets), for reports and predictions.
    """

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str] | None = None

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class DatasetInfo:
    """What a model needs to know about a dataset: task, classes, input shape, where it came from."""

    name: str
    task: str
    classes: list[str]
    channels: int
    size: tuple[int, int]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)  # the data summary of image files (data.summary)
    native_sizes: list[tuple[int, int]] = field(default_factory=list)  # (H, W) of image files before the fit
    file_size: tuple[int, int] | None = None  # (H, W) image files were brought to, before any --resize

    @property
    def num_outputs(self) -> int:
        return len(self.classes)
