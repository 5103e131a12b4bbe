"""What a 2D segmentation evaluation leaves for the run's report: `scores_{name}.csv`, one row of scores per image
(pixel error, foreground tp / fp / fn pixels, F1 and, for membranes, the Rand error), worst first, and
`plots/overlays_{name}.png`, the worst images coloured by agreement with the truth (name as in `metrics_{name}.json`).

Both are at the threshold the evaluation reports first (summary_figures): the one chosen on validation
(metrics["at_threshold"]) when there is one, else 0.5 (two classes) or the argmax; only the pixels inside each
image's roi count, as in the metrics."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..data.segmentation import SegImage
from ..fileio import write_csv
from .metrics import dice_iou, rand_error
from ..report.overlays import MAX_PANELS, segmentation_overlays


def scored_threshold(metrics: dict, classes: list[str]) -> float | None:
    """The foreground threshold of the evaluation's reported figures; None: the argmax (more than two classes)."""
    if len(classes) != 2:
        return None
    return float(metrics.get("at_threshold", {}).get("threshold", 0.5))


def predicted(prob: np.ndarray, threshold: float | None) -> np.ndarray:
    """Class labels (H, W) int64 of posteriors (K, H, W): class 1 where prob[1] > threshold, else the argmax."""
    return (prob[1] > threshold).astype(np.int64) if threshold is not None else prob.argmax(0)


def image_scores(im: SegImage, prob: np.ndarray, threshold: float | None, rand: bool) -> dict:
    """One image's row: pixels scored (inside its roi), wrong ones, pixel error, foreground (class 1; with more
    classes any but the first) tp / fp / fn pixels, F1 (Dice of class 1, or the mean Dice of the classes after
    the first) and, with `rand` (membranes), the 2012 Rand error at `threshold`. prob: (K, H, W)."""
    pred, roi = predicted(prob, threshold), (im.roi if im.roi is not None else np.ones(im.mask.shape, bool))
    fg_pred, fg_true = (pred > 0) & roi, (im.mask > 0) & roi
    dice = [v["dice"] for v in dice_iou(pred, im.mask, range(1, prob.shape[0]), roi).values()]
    row = {"image": im.name, "pixels": int(roi.sum()), "wrong": int(((pred != im.mask) & roi).sum()),
           "tp": int((fg_pred & fg_true).sum()), "fp": int((fg_pred & ~fg_true).sum()),
           "fn": int((~fg_pred & fg_true).sum()), "f1": float(np.nanmean(dice)) if not np.isnan(dice).all() else math.nan}
    row["pixel_error"] = row["wrong"] / row["pixels"] if row["pixels"] else math.nan
    if rand:  # NaN where the roi holds no true cell pixel (a Rand score needs some)
        row["rand_error"] = (rand_error(prob[1], im.mask == 1, thresholds=[threshold], roi=im.roi)["rand_error"]
                             if ((im.mask != 1) & roi).any() else math.nan)
    return row


def worst_first(rows: list[dict]) -> list[dict]:
    """Rows sorted worst first: by Rand error (highest first) where rows have one, else by F1 (lowest first;
    NaN, no foreground anywhere, last); ties by pixel error, highest first."""
    if rows and "rand_error" in rows[0]:
        return sorted(rows, key=lambda r: (-r["rand_error"], -r["pixel_error"]))
    return sorted(rows, key=lambda r: (math.isnan(r["f1"]), r["f1"] if not math.isnan(r["f1"]) else 0.0,
                                       -r["pixel_error"]))


def title_of(row: dict) -> str:
    """A panel's title: the image name and its scores."""
    rand = f", Rand err {row['rand_error']:.3f}" if "rand_error" in row else ""
    return f"{row['image'][:28]}: F1 {row['f1']:.3f}{rand}, px err {row['pixel_error']:.3f}"


def segmentation_pictures(run_dir: Path, metrics_file: str, labelled: list[SegImage], probs: list[np.ndarray],
                          metrics: dict, classes: list[str]) -> list[dict]:
    """Write RUN/scores_{name}.csv and RUN/plots/overlays_{name}.png (metrics_file = metrics_{name}.json) of the
    evaluation of `labelled` images by their posteriors (K, H, W); returns the rows, worst first."""
    name = metrics_file.removeprefix("metrics_").removesuffix(".json")
    threshold = scored_threshold(metrics, classes)
    rand = threshold is not None and "rand_error" in metrics.get("at_threshold", metrics)
    rows = worst_first([image_scores(im, p, threshold, rand) for im, p in zip(labelled, probs)])
    write_csv(run_dir / f"scores_{name}.csv", rows, ["image", "pixels", "wrong", "pixel_error", "tp", "fp", "fn",
                                                     "f1"] + (["rand_error"] if rand else []))
    draw_worst(run_dir / "plots" / f"overlays_{name}.png", rows, labelled, probs, threshold, classes)
    return rows


def draw_worst(path: Path, rows: list[dict], labelled: list[SegImage], probs: list[np.ndarray],
               threshold: float | None, classes: list[str]) -> Path:
    """The grid of the worst images (rows' order): predicted vs true foreground of each, prob (K, H, W)."""
    by_name = {im.name: (im, p) for im, p in zip(labelled, probs)}
    shown = [by_name[r["image"]] for r in rows[:MAX_PANELS]]
    said = (f"{classes[1]} = probability > {threshold:g}" if threshold is not None
            else f"foreground = any class but {classes[0]} (argmax)")
    key = "Rand error" if rows and "rand_error" in rows[0] else "F1"
    return segmentation_overlays([im.image for im, _ in shown], [predicted(p, threshold) > 0 for _, p in shown],
                                 [im.mask > 0 for im, _ in shown], [im.roi for im, _ in shown],
                                 [title_of(r) for r in rows[:MAX_PANELS]], path,
                                 f"worst {len(shown)} of {len(rows)} images by {key}; {said}")
