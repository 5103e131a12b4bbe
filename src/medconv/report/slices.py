"""Orthogonal slices of a volume (axial, coronal, sagittal planes through one point) with label maps drawn over
it: the prediction as filled colour, and a reference (when given) as contours, so both can be read in one
picture."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .plots import plt, save_figure

COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c")


def centre_of(labels: np.ndarray | None, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The voxel the planes pass through: the centre of mass of the labelled voxels, else the volume's centre."""
    if labels is not None and labels.any():
        return tuple(int(round(c)) for c in np.argwhere(labels > 0).mean(0))
    return tuple(s // 2 for s in shape)


def orthogonal_slices(volume: np.ndarray, labels: np.ndarray | None, path: str | Path,
                      classes: Sequence[str] = (), reference: np.ndarray | None = None,
                      spacing: Sequence[float] | None = None) -> Path:
    """Write a PNG of three planes of `volume` (D, H, W) in [0, 1] through the centre of the labels: `labels`
    (D, H, W) ints filled in colour (class k in COLOURS[k - 1], half transparent), `reference` as contours.
    `spacing` (D, H, W) in mm draws voxels at their true proportions."""
    d, h, w = centre_of(labels if labels is not None else reference, volume.shape)
    sd, sh, sw = spacing or (1.0, 1.0, 1.0)
    planes = [(f"axial (D = {d})", np.s_[d, :, :], sh / sw), (f"coronal (H = {h})", np.s_[:, h, :], sd / sw),
              (f"sagittal (W = {w})", np.s_[:, :, w], sd / sh)]
    fig, axes = plt.subplots(1, 3, figsize=(11, 4))
    for ax, (title, where, aspect) in zip(axes, planes):
        ax.imshow(volume[where], cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect=aspect)
        for k in range(1, len(COLOURS) + 1):
            colour = COLOURS[k - 1]
            if labels is not None and (labels[where] == k).any():
                ax.imshow(np.ma.masked_where(labels[where] != k, np.ones_like(labels[where])), alpha=0.45,
                          cmap=_single(colour), vmin=0, vmax=1, interpolation="nearest", aspect=aspect)
            if reference is not None and (reference[where] == k).any():
                ax.contour(reference[where] == k, levels=[0.5], colors=[colour], linewidths=1.0)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    present = sorted(int(k) for k in np.unique(labels)) if labels is not None else []
    names = [classes[k] if k < len(classes) else str(k) for k in present if k > 0]
    if names:
        fig.suptitle("filled: " + ", ".join(names) + ("; contours: reference" if reference is not None else ""),
                     fontsize=9)
    save_figure(fig, path)
    return Path(path)


def _single(colour: str):
    from matplotlib.colors import ListedColormap

    return ListedColormap([colour])
