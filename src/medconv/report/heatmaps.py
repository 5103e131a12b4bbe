"""Heat maps over the image they explain (a classifier's explanation, analysis.explain): beside the image for 2D,
orthogonal slices through the map's peak for volumes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import plt, save_figure

ALPHA = 0.45  # of the heat map over the image


def peak_of(heat: np.ndarray) -> tuple[int, ...]:
    """The index of a map's highest value: (row, col) of (H, W), (d, h, w) of (D, H, W)."""
    return tuple(int(i) for i in np.unravel_index(np.argmax(heat), heat.shape))


def heat_over_image(image: np.ndarray, heat: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Write a PNG of `image` (C, H, W) in [0, 1] (1 or 3 channels) beside the same image under `heat` (H, W) in
    [0, 1], its peak marked."""
    shown = image[0] if image.shape[0] == 1 else np.moveaxis(image[:3], 0, -1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4.3))
    for ax in (left, right):
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.axis("off")
    right.imshow(heat, cmap="jet", vmin=0, vmax=1, alpha=ALPHA, interpolation="bilinear")
    row, col = peak_of(heat)
    right.plot(col, row, marker="+", color="white", markersize=12, markeredgewidth=2)
    left.set_title("image", fontsize=9)
    right.set_title(f"peak (row {row}, col {col})", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    return Path(path)


def heat_over_volume(volume: np.ndarray, heat: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Write a PNG of three planes of `volume` (D, H, W) in [0, 1] through the peak of `heat` (D, H, W) in [0, 1],
    the map drawn over each, its peak marked."""
    d, h, w = peak_of(heat)
    planes = [(f"axial (D = {d})", np.s_[d, :, :], (h, w)), (f"coronal (H = {h})", np.s_[:, h, :], (d, w)),
              (f"sagittal (W = {w})", np.s_[:, :, w], (d, h))]
    fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    for ax, (name, where, (row, col)) in zip(axes, planes):
        ax.imshow(volume[where], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.imshow(heat[where], cmap="jet", vmin=0, vmax=1, alpha=ALPHA, interpolation="bilinear")
        ax.plot(col, row, marker="+", color="white", markersize=12, markeredgewidth=2)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    return Path(path)
