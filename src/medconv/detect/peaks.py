"""Peaks of a probability map: Gaussian smoothing, local maxima, optional non-maximum suppression.

The recipe of Ciresan et al. 2013 (mitosis detection): smooth the per-pixel probability map, then
every local maximum above a threshold is a detection scored by its smoothed probability.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.feature import peak_local_max

from ..errors import UserError


def _merge_plateaus(smooth: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """One (row, col) per flat maximum: peaks on one plateau become its pixel nearest the plateau's centre."""
    flat = smooth == ndimage.maximum_filter(smooth, size=3, mode="nearest")
    labels, _ = ndimage.label(flat, structure=np.ones((3, 3)))  # 8-connected pieces have one value each
    ids = labels[coords[:, 0], coords[:, 1]]
    _, first = np.unique(ids, return_index=True)
    merged = coords[np.sort(first)].copy()
    boxes = ndimage.find_objects(labels)
    for k, (r, c) in enumerate(merged):
        label = labels[r, c]
        box = boxes[label - 1]
        pixels = np.argwhere(labels[box] == label) + [box[0].start, box[1].start]
        if len(pixels) > 1:
            merged[k] = pixels[np.argmin(((pixels - pixels.mean(axis=0)) ** 2).sum(axis=1))]
    return merged


def suppress(peaks: np.ndarray, radius: float) -> np.ndarray:
    """Greedy non-maximum suppression of (N, 3) (row, col, score) peaks sorted by score.

    Keeps a peak unless a kept, higher-scored one lies within `radius` pixels (distance <= radius).
    """
    keep = np.ones(len(peaks), dtype=bool)
    if len(peaks) < 2:
        return peaks
    tree = cKDTree(peaks[:, :2])
    for i in range(len(peaks)):
        if keep[i]:
            near = np.asarray(tree.query_ball_point(peaks[i, :2], r=radius), dtype=np.int64)
            keep[near[near > i]] = False
    return peaks[keep]


def find_peaks(prob: np.ndarray, sigma: float = 0.0, min_distance: int = 3, threshold: float = 0.5,
               nms_radius: float | None = None) -> np.ndarray:
    """Detections in a probability map prob (H, W): (N, 3) float64 (row, col, score), highest score first.

    prob is smoothed with a Gaussian of `sigma` px (0: none); local maxima come from
    skimage.feature.peak_local_max (no two within `min_distance` px, Chebyshev; strictly above
    `threshold`; borders included); a flat maximum gives one peak. The score is the smoothed value.
    `nms_radius` then removes peaks within that Euclidean distance of a higher one. Rows and columns
    are 0-based pixel indices; ties in score are ordered by row, then column.
    """
    prob = np.asarray(prob, dtype=np.float64)
    if prob.ndim != 2:
        raise UserError(f"probability map of shape {prob.shape}: expected a 2D array (H, W)")
    if isinstance(min_distance, bool) or not isinstance(min_distance, (int, np.integer)) or min_distance < 1:
        raise UserError(f"min_distance {min_distance!r}: expected an integer >= 1 (pixels)")
    if not sigma >= 0 or (nms_radius is not None and not nms_radius >= 0):
        raise UserError(f"sigma {sigma!r}, nms_radius {nms_radius!r}: expected numbers >= 0")
    smooth = ndimage.gaussian_filter(prob, sigma) if sigma > 0 else prob
    coords = peak_local_max(smooth, min_distance=int(min_distance), threshold_abs=threshold, exclude_border=False)
    if len(coords) == 0:
        return np.zeros((0, 3))
    coords = _merge_plateaus(smooth, coords)
    scores = smooth[coords[:, 0], coords[:, 1]]
    order = np.lexsort((coords[:, 1], coords[:, 0], -scores))
    peaks = np.column_stack([coords[order], scores[order]]).astype(np.float64)
    return suppress(peaks, nms_radius) if nms_radius else peaks


CSV_FIELDS = ["image", "x", "y", "score"]  # a detection's columns, as load_points_csv reads them


def peaks_to_csv_rows(name: str, peaks: np.ndarray, one_based: bool = True) -> list[dict]:
    """CSV rows {image, x, y, score} of (N, 3) (row, col, score) peaks; x = column, y = row, 1-based by default.

    The rows have the columns `medconv.data.points.load_points_csv` reads.
    """
    offset = 1.0 if one_based else 0.0
    return [dict(zip(CSV_FIELDS, (name, float(c) + offset, float(r) + offset, float(s))))
            for r, c, s in np.asarray(peaks, dtype=np.float64).reshape(-1, 3)]


def detect(prob: np.ndarray, params: dict) -> np.ndarray:
    """Detections (N, 3) (row, col, score) of a centre map with the tuned peak parameters (and the optional
    non-maximum suppression radius `nms_radius`)."""
    return find_peaks(prob, params["sigma"], params["min_distance"], params["threshold"] - 1e-9,
                      params.get("nms_radius"))


def read_params(run_dir: str | Path) -> dict:
    """A detection run's peak parameters and test-time augmentation, chosen on validation (RUN/detect.json)."""
    path = Path(run_dir) / "detect.json"
    if not path.exists():
        raise UserError(f"{path} not found: {run_dir} is not a detection run (made by medconv detect train)")
    try:
        params = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} cannot be read ({e}): run medconv detect tune {run_dir} to choose the peak "
                        "parameters again") from None
    if not isinstance(params, dict) or not {"sigma", "min_distance", "threshold"} <= set(params):
        raise UserError(f"{path} lacks the peak parameters: run medconv detect tune {run_dir} to choose them again")
    return params
