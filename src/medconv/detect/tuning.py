"""The peak parameters (smoothing, minimum distance, threshold) with the best F1 on validation maps."""
from __future__ import annotations

import numpy as np

from .matching import threshold_sweep
from .peaks import find_peaks

SIGMAS = (0.0, 1.0, 2.0, 3.0, 4.0)
MIN_DISTANCES = (3, 5, 7)
# fine steps at the bottom: heavily smoothed maps of soft (proximity) targets peak well below 0.5
THRESHOLDS = tuple(np.round(np.r_[np.arange(0.01, 0.05, 0.01), np.arange(0.05, 0.96, 0.05)], 2))

def tune(maps: list[np.ndarray], truths: list[np.ndarray], tolerance: float) -> dict:
    """Sigma, minimum distance and threshold with the best F1 over the images (TP/FP/FN summed)."""
    best = None
    for sigma in SIGMAS:
        for min_distance in MIN_DISTANCES:
            scored = [(find_peaks(m, sigma, min_distance, threshold=min(THRESHOLDS) - 1e-6), t)
                      for m, t in zip(maps, truths)]
            rows, threshold = threshold_sweep(scored, tolerance, THRESHOLDS)
            row = next(r for r in rows if r["threshold"] == threshold)
            if best is None or row["f1"] > best["f1"]:
                best = {"sigma": sigma, "min_distance": min_distance, "threshold": threshold, "f1": row["f1"],
                        "sweep": rows}
    return best
