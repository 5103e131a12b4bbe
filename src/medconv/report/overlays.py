"""Pictures of scored 2D images for a run's report: segmentations coloured by agreement with the truth (true
positive, false positive, false negative), detections marked as hits, false positives and misses, and precision,
recall and F1 against the detection threshold.

Each image is drawn in grey, so that the colours read on any stain."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from matplotlib.colors import to_rgba
from matplotlib.patches import Patch

from .grids import grid_axes
from .plots import plt, save_figure

MAX_PANELS = 8  # images in one grid
HIT, FALSE_POSITIVE, MISS = "#2ca02c", "#e6194b", "#1f9bff"  # green, red, blue: the same in every picture
ALPHA = 0.45  # of the segmentation colours over the image
SEGMENT_KEY = {HIT: "true positive (predicted and true)", FALSE_POSITIVE: "false positive (predicted only)",
               MISS: "false negative (true only)"}
DETECT_KEY = {HIT: "hit (matched detection)", FALSE_POSITIVE: "false positive", MISS: "miss (unmatched centre)"}


def grey(image: np.ndarray) -> np.ndarray:
    """An image (C, H, W) in [0, 1] as one grey (H, W) plane: the mean of its channels."""
    return np.asarray(image, dtype=np.float32).mean(0)


def agreement_rgba(pred: np.ndarray, truth: np.ndarray, roi: np.ndarray | None = None) -> np.ndarray:
    """An (H, W, 4) RGBA layer of the (H, W) bool maps pred and truth: true positives HIT, false positives
    FALSE_POSITIVE, false negatives MISS, at ALPHA; every other pixel, and every pixel outside the (H, W) bool
    `roi` (not scored), transparent."""

    layer = np.zeros((*pred.shape, 4), np.float32)
    inside = np.ones(pred.shape, bool) if roi is None else roi
    for where, colour in ((pred & truth, HIT), (pred & ~truth, FALSE_POSITIVE), (~pred & truth, MISS)):
        layer[where & inside] = to_rgba(colour, ALPHA)
    return layer


def show_image(ax, image: np.ndarray, title: str) -> None:
    """Draw image (C, H, W) in [0, 1] in grey on `ax`, titled, without axes."""
    ax.imshow(grey(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.autoscale(False)  # marks at the border must not widen the panel
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def finish(fig, key: dict[str, str], title: str, path: str | Path) -> Path:
    """Add the colour key (colour -> meaning) under the panels and `title` over them; save the PNG at `path`."""

    fig.legend(handles=[Patch(color=c, label=label) for c, label in key.items()], loc="outside lower center",
               ncol=len(key), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    return Path(path)


def segmentation_overlays(images: Sequence[np.ndarray], preds: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                          rois: Sequence[np.ndarray | None], titles: Sequence[str], path: str | Path,
                          title: str = "") -> Path:
    """Write a PNG grid of the first MAX_PANELS images (C, H, W) in [0, 1], each in grey under agreement_rgba of
    its predicted and true foreground, (H, W) bool; its roi, (H, W) bool or None, outlined (dashed white)."""
    fig, axes = grid_axes(min(len(images), MAX_PANELS), side=3.6)
    for ax, image, pred, truth, roi, name in zip(axes, images, preds, truths, rois, titles):
        show_image(ax, image, name)
        ax.imshow(agreement_rgba(pred, truth, roi), interpolation="nearest")
        if roi is not None and not roi.all():
            ax.contour(roi, levels=[0.5], colors="white", linewidths=0.8, linestyles="dashed")
    return finish(fig, SEGMENT_KEY, title, path)


def detection_overlays(images: Sequence[np.ndarray], hits: Sequence[np.ndarray], false_positives: Sequence[np.ndarray],
                       misses: Sequence[np.ndarray], titles: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Write a PNG grid of the first MAX_PANELS images (C, H, W) in [0, 1] in grey, with a ring around each point
    of an image's hits (HIT), false positives (FALSE_POSITIVE) and misses (MISS), each (N, 2) (row, col)."""
    fig, axes = grid_axes(min(len(images), MAX_PANELS), side=3.6)
    for ax, image, *marks, name in zip(axes, images, hits, false_positives, misses, titles):
        show_image(ax, image, name)
        for points, colour in zip(marks, (HIT, FALSE_POSITIVE, MISS)):
            points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            ax.scatter(points[:, 1], points[:, 0], s=14, facecolors="none", edgecolors=colour, linewidths=0.9)
    return finish(fig, DETECT_KEY, title, path)


def plot_f1_threshold(sweep: Sequence[dict], chosen: float, path: str | Path, title: str = "") -> Path:
    """Write a PNG of precision, recall and F1 against the threshold, from `sweep` [{threshold, precision, recall,
    f1}] (thresholds ascending), the `chosen` threshold marked with its F1."""
    t = [r["threshold"] for r in sweep]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for key, colour in (("precision", "#4363d8"), ("recall", "#f58231"), ("f1", "black")):
        ax.plot(t, [r[key] for r in sweep], color=colour, label=key if key != "f1" else "F1")
    pick = min(sweep, key=lambda r: abs(r["threshold"] - chosen))
    ax.axvline(chosen, color="grey", linestyle=":")
    ax.plot(chosen, pick["f1"], "o", color="red", label=f"chosen threshold {chosen:g} (F1 {pick['f1']:.3f})")
    ax.set(xlabel="detection threshold (peak height)", ylabel="score", ylim=(0, 1.02), title=title or "F1 vs threshold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    save_figure(fig, path)
    return Path(path)
