"""A built-in synthetic lesion dataset, so the demo and tests run with no data and no network.

Ultrasound-like speckle images with one dark lesion each. Class 0 ("malignant") lesions have
irregular, spiculated margins and tend to be taller than wide; class 1 ("benign") lesions are
smooth and wider than tall. The two overlap, so the task is learnable but not trivial.
"""
from __future__ import annotations

import numpy as np
import torch

from .types import DatasetInfo, ImageSet

CLASSES = ["malignant (synthetic)", "benign (synthetic)"]
SPLIT_SIZES = {"train": 600, "val": 100, "test": 200}


def lesion_image(rng: np.random.Generator, malignant: bool, size: int) -> np.ndarray:
    """One (size, size) uint8 image."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    cy, cx = rng.uniform(-0.12, 0.12, 2)
    angle = np.arctan2(yy - cy, xx - cx)
    r = np.hypot(yy - cy, xx - cx)
    radius = rng.uniform(0.14, 0.26)
    aspect = rng.normal(1.12 if malignant else 0.92, 0.25)  # height / width
    stretch = np.sqrt((np.sin(angle) / max(aspect, 0.4)) ** 2 + np.cos(angle) ** 2)
    irregular = rng.uniform(0.04, 0.3) if malignant else rng.uniform(0.0, 0.2)
    lobes = rng.integers(5, 11)
    margin = radius / stretch * (1 + irregular * np.sin(lobes * angle + rng.uniform(0, 2 * np.pi)))
    inside = 1.0 / (1.0 + np.exp((r - margin) * size * (1.0 if malignant else 0.7)))
    background = 0.55 + 0.1 * (yy + 0.5) + rng.normal(0, 0.04)
    image = background * (1 - 0.65 * inside)
    speckle = rng.gamma(12.0, 1 / 12.0, (size, size))
    image = image * speckle + rng.normal(0, 0.03, (size, size))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def load_synthetic(size: int = 28, seed: int = 0) -> tuple[DatasetInfo, dict[str, ImageSet]]:
    """Train/val/test splits ({600, 100, 200} images), balanced classes, images (N, 1, size, size)."""
    rng = np.random.default_rng(seed)
    sets = {}
    for split, n in SPLIT_SIZES.items():
        labels = rng.permutation(np.arange(n) % 2)
        images = np.stack([lesion_image(rng, label == 0, size) for label in labels])
        sets[split] = ImageSet(torch.from_numpy(images[:, None]), torch.from_numpy(labels[:, None].astype(np.int64)))
    info = DatasetInfo(name="synthetic-lesions", task="binary-class", classes=list(CLASSES), channels=1,
                       size=(size, size), source="built-in synthetic lesion generator",
                       notes=["synthetic data: no medical meaning, for demonstration only"])
    return info, sets
