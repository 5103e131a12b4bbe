"""What a detection evaluation leaves for the run's report (name = detect_{split}, as `detect_{split}.json`):
`scores_{name}.csv` (per image precision, recall, F1 and the counts of hits, false positives and misses, worst F1
first), `plots/overlays_{name}.png` (the worst images, their hits, false positives and misses marked) and
`plots/f1_threshold_{name}.png` (precision, recall and F1 against the peak-height threshold, the chosen one marked).

Everything is matched as evaluate_detection scores it: detect.matching.match within the tolerance, a peak counting
at threshold t when its score is >= t - 1e-9, on the peaks of the maps the evaluation made."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.segmentation import SegImage
from ..fileio import write_csv
from .matching import detection_scores, match, scores
from .tuning import THRESHOLDS
from ..report.overlays import MAX_PANELS, detection_overlays, plot_f1_threshold

STEPS = 30  # thresholds of the F1 curve, evenly over the range the tuning searches (plus the chosen one)
FIELDS = ["image", "true", "found", "hits", "false_positives", "misses", "precision", "recall", "f1"]


def above(peaks: np.ndarray, threshold: float) -> np.ndarray:
    """The peaks (P, 3) (row, col, score) that count at `threshold`, as (N, 2) (row, col)."""
    return peaks[peaks[:, 2] >= threshold - 1e-9, :2]


def marks(found: np.ndarray, truth: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hits, false positives, misses), each (N, 2) (row, col): the detections found (P, 2) matched to a true
    centre of truth (T, 2) within `tolerance`, those matched to none, and the true centres no detection matched."""
    found, truth = np.asarray(found, np.float64).reshape(-1, 2), np.asarray(truth, np.float64).reshape(-1, 2)
    pairs = match(found, truth, tolerance)[0]
    hit, seen = np.zeros(len(found), bool), np.zeros(len(truth), bool)
    hit[[i for i, _ in pairs]] = True
    seen[[j for _, j in pairs]] = True
    return found[hit], found[~hit], truth[~seen]


def image_row(name: str, hits: np.ndarray, false_positives: np.ndarray, misses: np.ndarray) -> dict:
    """One image's row of FIELDS from its marks."""
    s = scores(len(hits), len(false_positives), len(misses))
    return {"image": name, "true": len(hits) + len(misses), "found": len(hits) + len(false_positives),
            "hits": s["tp"], "false_positives": s["fp"], "misses": s["fn"],
            "precision": s["precision"], "recall": s["recall"], "f1": s["f1"]}


def f1_threshold_sweep(peaks: list[np.ndarray], truths: list[np.ndarray], tolerance: float, chosen: float,
                       steps: int = STEPS) -> list[dict]:
    """[{threshold, tp, fp, fn, precision, recall, f1}] (TP/FP/FN summed over the images) at `steps` thresholds
    evenly from the lowest to the highest of tuning.THRESHOLDS, and at `chosen`, ascending. peaks: per image (P, 3)
    (row, col, score), found above the lowest threshold; truths: per image (T, 2) (row, col)."""
    grid = sorted({round(float(t), 6) for t in np.linspace(min(THRESHOLDS), max(THRESHOLDS), steps)} | {float(chosen)})
    return [{"threshold": t, **detection_scores([(above(p, t), truth) for p, truth in zip(peaks, truths)], tolerance)}
            for t in grid]


def detection_pictures(run_dir: Path, split: str, images: list[SegImage], peaks: list[np.ndarray],
                       threshold: float, tolerance: float) -> list[dict]:
    """Write the three files of a split's evaluation from its images' peaks (P, 3) (row, col, score) above the
    lowest threshold, the chosen `threshold` and the matching `tolerance` (px); returns the rows, worst F1 first
    (ties: more errors first, then by name)."""
    name = f"detect_{split}"
    drawn = [marks(above(p, threshold), im.points, tolerance) for im, p in zip(images, peaks)]
    order = sorted(((image_row(im.name, *m), im.image, m) for im, m in zip(images, drawn)),
                   key=lambda o: (o[0]["f1"], -(o[0]["false_positives"] + o[0]["misses"]), o[0]["image"]))
    write_csv(run_dir / f"scores_{name}.csv", [row for row, *_ in order], FIELDS)
    sweep = f1_threshold_sweep(peaks, [im.points for im in images], tolerance, threshold)
    draw(run_dir / "plots", name, order, sweep, threshold, tolerance)
    return [row for row, *_ in order]


def draw(plots: Path, name: str, order: list[tuple], sweep: list[dict], threshold: float, tolerance: float) -> None:
    """plots/overlays_{name}.png of the first images of `order` [(row, image (C, H, W), (hits, false positives,
    misses))], worst first, and plots/f1_threshold_{name}.png of the sweep."""
    worst = order[:MAX_PANELS]
    hits, false_positives, misses = zip(*(m for *_, m in worst))
    detection_overlays([image for _, image, _ in worst], hits, false_positives, misses,
                       [f"{r['image'][:24]}: F1 {r['f1']:.3f} ({r['false_positives']} FP, {r['misses']} missed)"
                        for r, *_ in worst], plots / f"overlays_{name}.png",
                       f"worst {len(worst)} of {len(order)} images by F1; threshold {threshold:g}, "
                       f"matched within {tolerance:g} px")
    plot_f1_threshold(sweep, threshold, plots / f"f1_threshold_{name}.png",
                      f"{name}: precision, recall, F1 vs threshold")
