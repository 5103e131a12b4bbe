"""Pictures of a classifier's evaluation on a split, for its run report: precision-recall curves, the most confident
errors and Grad-CAM maps over a fixed sample of the split's images (plots/pr_, errors_, cam_{name}.png)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..analysis.explain import explain
from ..data.transforms import normalise
from ..data.types import unit_float
from ..errors import UserError
from ..metrics import MULTI_LABEL
from ..report.grids import heat_grid, image_grid
from ..report.plots import plot_pr

ERRORS_SHOWN = 16  # most confident errors drawn
CAM_SAMPLE = 8  # images of a split explained by Grad-CAM


def confident_errors(labels: np.ndarray, scores: np.ndarray, task: str, limit: int = ERRORS_SHOWN) -> np.ndarray:
    """Indices (M,), M <= limit, of the wrongly classified images of labels (N, 1) and probabilities (N, K): those
    whose predicted (highest) class is not their true one, the highest probability of that wrong class first (ties
    in index order). A multi-label task has no single predicted class per image: none are chosen (empty)."""
    if task == MULTI_LABEL:
        return np.zeros(0, dtype=int)
    predicted = scores.argmax(1)
    wrong = np.flatnonzero(predicted != np.asarray(labels).reshape(-1))
    return wrong[np.argsort(-scores[wrong, predicted[wrong]], kind="stable")][:limit]


def even_sample(count: int, size: int = CAM_SAMPLE) -> np.ndarray:
    """Up to `size` evenly spaced indices (M,) of range(count), first and last included: the same every time."""
    return np.unique(np.linspace(0, count - 1, min(count, size)).round().astype(int))


def captions(labels: np.ndarray, scores: np.ndarray, classes: list[str], task: str, rows: np.ndarray) -> list[str]:
    """'true T / pred P (p)' of images `rows` (M,) of labels (N, 1) or (N, L) and probabilities (N, K); for a
    multi-label task T is the labels present and P the most probable label."""
    found = []
    for i in rows:
        if task == MULTI_LABEL:
            truth = ",".join(c[:10] for c, v in zip(classes, labels[i]) if v) or "none"
        else:
            truth = classes[int(labels[i][0])]
        k = int(scores[i].argmax())
        found.append(f"true {truth[:18]}\npred {classes[k][:18]} ({scores[i, k]:.2f})")
    return found


def class_maps(model: nn.Module, meta: dict, images: torch.Tensor, targets: np.ndarray | None, device: str
               ) -> np.ndarray | None:
    """Grad-CAM maps (M, *spatial) in [0, 1] of images (M, C, *spatial) in [0, 1] (normalised here as the network
    takes them, on `device`) for classes `targets` (M,) or, None, the network's own predictions; None when the
    network has no convolution for Grad-CAM to read."""
    if not len(images):
        return None
    x = normalise(unit_float(images), meta["mean"], meta["std"]).to(device)
    try:
        return explain(model, x, "gradcam", class_index=targets, task=meta["task"]).numpy()
    except UserError:
        return None


def write_errors(images, labels: np.ndarray, scores: np.ndarray, classes: list[str], task: str, path: Path,
                 title: str = "") -> Path | None:
    """A grid of the most confident errors (confident_errors) among images (N, C, H, W) or (N, C, D, H, W) with
    labels (N, 1) and probabilities (N, K) at `path`; None without errors (or for a multi-label task), when an
    earlier evaluation's picture at `path` is removed: it would pass for this one's."""
    wrong = confident_errors(labels, scores, task)
    if not len(wrong):
        path.unlink(missing_ok=True)
        return None
    return image_grid(unit_float(images[torch.as_tensor(wrong)]).numpy(),
                      captions(labels, scores, classes, task, wrong), path, title)


def write_cams(model: nn.Module, meta: dict, images, labels: np.ndarray, scores: np.ndarray, classes: list[str],
               task: str, path: Path, device: str, title: str = "") -> Path | None:
    """A grid of Grad-CAM maps of the predicted class over an even sample (even_sample) of images (N, C, H, W) or
    (N, C, D, H, W) with labels (N, 1) or (N, L) and probabilities (N, K) at `path`. Over a --level's classes
    (not the network's) the maps are of the network's own prediction. None when the network has no convolution
    for Grad-CAM, when an earlier evaluation's picture at `path` is removed."""
    sample = even_sample(len(labels))
    picked = unit_float(images[torch.as_tensor(sample)])
    maps = class_maps(model, meta, picked, scores[sample].argmax(1) if classes == meta["classes"] else None, device)
    if maps is None:
        path.unlink(missing_ok=True)
        return None
    return heat_grid(picked.numpy(), maps, captions(labels, scores, classes, task, sample), path, title)


def write_pictures(model: nn.Module, meta: dict, images, labels: np.ndarray, scores: np.ndarray, task: str,
                   classes: list[str], plots: Path, name: str, device: str, title: str = "") -> list[Path]:
    """Write plots/pr_{name}.png (plot_pr), errors_{name}.png (write_errors) and cam_{name}.png (write_cams) of a
    split's images (N, C, H, W) or (N, C, D, H, W) in [0, 1] (a tensor, or images read when indexed), labels
    (N, 1) or (N, L) and probabilities (N, K) over `classes`, with the network `model` on `device` and its
    checkpoint's `meta`; `title` (dataset and split) heads each picture. Returns the paths written."""
    plots = Path(plots)
    plot_pr(labels, scores, task, classes, plots / f"pr_{name}.png", f"{title} precision-recall".strip())
    written = [plots / f"pr_{name}.png",
               write_errors(images, labels, scores, classes, task, plots / f"errors_{name}.png",
                            f"{title} most confident errors".strip()),
               write_cams(model, meta, images, labels, scores, classes, task, plots / f"cam_{name}.png", device,
                          f"{title} Grad-CAM of the predicted class".strip())]
    return [p for p in written if p is not None]
