"""Matching detections to ground-truth centres within a distance tolerance, and the scores that follow.

One-to-one matching by the Hungarian algorithm (scipy.optimize.linear_sum_assignment): the most
pairs within the tolerance, and among those the smallest total distance. A distance exactly equal
to the tolerance counts as a match (distance <= tolerance, Euclidean, float64). Scores from TP/FP/FN
summed over images; a ratio with a zero denominator is 0.0 (no predictions: precision 0; no ground
truth: recall 0; neither: F1 0), as scikit-learn's zero_division=0, so sweeps and means stay finite.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.distance import cdist

from ..errors import UserError


def _points(a: np.ndarray, what: str, columns: int = 2) -> np.ndarray:
    """(N, >= columns) float64 array, empty input as (0, columns)."""
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, columns))
    if a.ndim != 2 or a.shape[1] < columns:
        raise UserError(f"{what} of shape {a.shape}: expected (N, {columns}) coordinates{' + score' * (columns > 2)}")
    return a


def match(pred: np.ndarray, truth: np.ndarray, tolerance: float) -> tuple[list[tuple[int, int]], int, int, int]:
    """Match pred (P, 2) to truth (T, 2) one-to-one within `tolerance`: (pairs [(i, j)], tp, fp, fn).

    Both in the same coordinates and units (e.g. 0-based (row, col) pixels); extra pred columns such
    as a score are ignored. Pairs are sorted by i. The cost is the distance where <= tolerance and a
    constant larger than any sum of such distances elsewhere, so the assignment maximises the matches.
    """
    p, t = _points(pred, "pred")[:, :2], _points(truth, "truth")[:, :2]
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise UserError(f"tolerance {tolerance!r}: expected a distance >= 0")
    pairs: list[tuple[int, int]] = []
    if len(p) and len(t):
        dist = cdist(p, t)
        near = dist <= tolerance
        rows, cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
        if len(rows):
            sub, ok = dist[np.ix_(rows, cols)], near[np.ix_(rows, cols)]
            cost = np.where(ok, sub, (min(sub.shape) + 1) * (tolerance + 1.0))
            # imported here: a slow import that `detect predict` skips
            from scipy.optimize import linear_sum_assignment

            r, c = linear_sum_assignment(cost)
            keep = ok[r, c]
            pairs = sorted(zip(rows[r[keep]].tolist(), cols[c[keep]].tolist()))
    tp = len(pairs)
    return pairs, tp, len(p) - tp, len(t) - tp


def scores(tp: int, fp: int, fn: int) -> dict:
    """{tp, fp, fn, precision, recall, f1}; a zero denominator gives 0.0."""
    def ratio(num: float, den: float) -> float:
        return num / den if den else 0.0

    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn), "f1": ratio(2 * tp, 2 * tp + fp + fn)}


def detection_scores(per_image: Sequence[tuple[np.ndarray, np.ndarray]], tolerance: float) -> dict:
    """Precision, recall, F1 from TP/FP/FN summed over images; per_image = [(pred (P, 2), truth (T, 2))]."""
    totals = np.zeros(3, dtype=np.int64)
    for pred, truth in per_image:
        totals += match(pred, truth, tolerance)[1:]
    return scores(*totals)


def threshold_sweep(per_image_scored: Sequence[tuple[np.ndarray, np.ndarray]], tolerance: float,
                    thresholds: Sequence[float]) -> tuple[list[dict], float]:
    """Scores at each threshold: ([{threshold, tp, fp, fn, precision, recall, f1}], best threshold).

    per_image_scored = [(pred (P, 3) (row, col, score), truth (T, 2))]; a prediction counts at
    threshold t when score >= t. The best threshold has the highest F1 (the first of equals, in the
    order given).
    """
    images = [(_points(pred, "scored pred", 3), truth) for pred, truth in per_image_scored]
    if len(thresholds) == 0:
        raise UserError("thresholds: expected at least one value")
    rows = []
    for t in thresholds:
        row = detection_scores([(pred[pred[:, 2] >= t], truth) for pred, truth in images], tolerance)
        rows.append({"threshold": float(t), **row})
    best = max(range(len(rows)), key=lambda k: (rows[k]["f1"], -k))
    return rows, rows[best]["threshold"]


def per_class_f1(per_image: Sequence[tuple], tolerance: float, classes: Sequence | None = None) -> dict:
    """Typed detection scores: a match also needs the same class (matching is done class by class).

    per_image = [(pred (P, 2), pred_classes (P,), truth (T, 2), truth_classes (T,))]. Returns
    {"per_class": {class: {tp, fp, fn, precision, recall, f1, support}}, "macro_f1", "weighted_f1"},
    support = ground-truth count, weights = supports; `classes` defaults to all labels seen, sorted.
    """
    images = []
    for pred, pred_cls, truth, truth_cls in per_image:
        pred, truth = _points(pred, "pred"), _points(truth, "truth")
        pred_cls, truth_cls = np.asarray(pred_cls, dtype=object), np.asarray(truth_cls, dtype=object)
        if len(pred_cls) != len(pred) or len(truth_cls) != len(truth):
            raise UserError(f"classes: {len(pred_cls)} for {len(pred)} predictions, "
                            f"{len(truth_cls)} for {len(truth)} true points; expected one per point")
        images.append((pred, pred_cls, truth, truth_cls))
    if classes is None:
        classes = sorted({c for im in images for c in (*im[1], *im[3])}, key=str)
    per_class = {}
    for c in classes:
        row = detection_scores([(p[pc == c], t[tc == c]) for p, pc, t, tc in images], tolerance)
        per_class[c] = {**row, "support": row["tp"] + row["fn"]}
    f1 = np.array([r["f1"] for r in per_class.values()])
    support = np.array([r["support"] for r in per_class.values()], dtype=np.float64)
    return {"per_class": per_class, "macro_f1": float(f1.mean()) if len(f1) else 0.0,
            "weighted_f1": float((f1 * support).sum() / support.sum()) if support.sum() else 0.0}
