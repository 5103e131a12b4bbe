"""Grids of a split's images for a run's report, each image titled: images as they are (a classifier's most
confident errors) or under a heat map (Grad-CAM); a volume drawn as one axial slice."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .heatmaps import ALPHA, peak_of
from .plots import plt, save_figure

COLUMNS = 4


def shown(image: np.ndarray) -> np.ndarray:
    """What imshow draws of an image (C, H, W) in [0, 1]: its first channel (H, W) unless it has 3 or more, then its
    first three as RGB (H, W, 3)."""
    picture = image[0] if image.shape[0] < 3 else np.moveaxis(image[:3], 0, -1)
    return np.clip(picture, 0, 1)


def axial(image: np.ndarray, depth: int | None = None) -> np.ndarray:
    """An image (C, H, W) as it is, or axial slice `depth` (default: the middle one) (C, H, W) of a volume
    (C, D, H, W)."""
    if image.ndim == 3:
        return image
    return image[:, image.shape[1] // 2 if depth is None else depth]


def grid_axes(count: int, title: str = "", side: float = 2.6):
    """(figure, `count` axes without ticks) of panels `side` inches wide in rows of up to COLUMNS (constrained
    layout, so a legend may go under them); the grid's unused axes hidden."""
    cols = max(1, min(count, COLUMNS))
    rows = max(1, math.ceil(count / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, (side + 0.2) * rows + (0.4 if title else 0)),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, list(axes.flat)[:count]


def image_grid(images: np.ndarray, titles: list[str], path: str | Path, title: str = "") -> Path:
    """Write a PNG grid of images (N, C, H, W) or volumes (N, C, D, H, W) in [0, 1] (their middle axial slice),
    each under its title; N >= 1."""
    fig, axes = grid_axes(len(images), title)
    for ax, image, name in zip(axes, images, titles):
        ax.imshow(shown(axial(image)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=8)
    save_figure(fig, path)
    return Path(path)


def heat_grid(images: np.ndarray, heats: np.ndarray, titles: list[str], path: str | Path, title: str = "") -> Path:
    """Write a PNG grid of images (N, C, H, W) under heat maps (N, H, W), or of volumes (N, C, D, H, W) under maps
    (N, D, H, W) as the axial slice through each map's peak, all in [0, 1], each peak marked; N >= 1."""
    fig, axes = grid_axes(len(images), title)
    for ax, image, heat, name in zip(axes, images, heats, titles):
        peak = peak_of(heat)
        plane = heat if heat.ndim == 2 else heat[peak[0]]
        ax.imshow(shown(axial(image, peak[0])), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.imshow(plane, cmap="jet", vmin=0, vmax=1, alpha=ALPHA, interpolation="bilinear")
        ax.plot(peak[-1], peak[-2], marker="+", color="white", markersize=10, markeredgewidth=2)
        ax.set_title(name if heat.ndim == 2 else f"{name}\naxial D = {peak[0]}", fontsize=8)
    save_figure(fig, path)
    return Path(path)
