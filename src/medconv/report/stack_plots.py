"""Pictures of a pretrained stack: first-layer filters, reconstructions beside inputs, Gibbs samples."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import plt, save_figure


def _tiles(ax_row, images: np.ndarray, shape: tuple[int, ...], cmap: str = "gray") -> None:
    for ax, flat in zip(ax_row, images):
        img = flat.reshape(shape)
        ax.imshow(img[0] if shape[0] == 1 else np.moveaxis(img, 0, -1), cmap=cmap)
        ax.axis("off")


def plot_filter_grid(components: np.ndarray, shape: tuple[int, ...], path: str | Path, max_filters: int = 64,
                     title: str = "") -> None:
    """Rows of `components` (K, C*H*W) as images (each scaled to its own range)."""
    k = min(max_filters, len(components))
    cols = int(np.ceil(np.sqrt(k)))
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9 + 0.4), squeeze=False)
    w = components[:k]
    w = (w - w.min(1, keepdims=True)) / np.maximum(np.ptp(w, axis=1, keepdims=True), 1e-12)
    for ax in axes.flat:
        ax.axis("off")
    _tiles(axes.flat, w, shape, cmap="gray" if shape[0] == 1 else None)
    fig.suptitle(title or f"first-layer filters ({k} of {len(components)})")
    save_figure(fig, path)


def plot_rows(rows: dict[str, np.ndarray], shape: tuple[int, ...], path: str | Path, title: str = "") -> None:
    """One row of images per entry, e.g. {"input": X (n, D), "reconstruction": R (n, D)}."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0 + 0.4), squeeze=False)
    for ax_row, (name, images) in zip(axes, rows.items()):
        for ax in ax_row:
            ax.axis("off")
        _tiles(ax_row, np.clip(images, 0, 1), shape)
        ax_row[0].set_title(name, fontsize=8, loc="left")
    fig.suptitle(title)
    save_figure(fig, path)
