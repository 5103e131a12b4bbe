"""The pictures and per-image score tables that 2D segmentation and detection evaluation leave for a run's report:
RUN/scores_{name}.csv worst first, adding up to the pooled figures of the evaluation's JSON, and PNGs that decode."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def decodes(path: Path, min_side: int = 300) -> tuple[int, int]:
    """The PNG's size, after Pillow has decoded every pixel of it."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        assert min(im.size) >= min_side
        return im.size


def f1_of(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def check_segmentation_table(run: Path, split: str, worst: str) -> list[dict]:
    """scores_{split}.csv against metrics_{split}.json: one row per image, sorted worst first by `worst`, the pixel
    counts pooled giving the reported pixel error and F1 at the reported threshold, each row's F1 its own counts'."""
    metrics = json.loads((run / f"metrics_{split}.json").read_text())
    at = metrics["at_threshold"]  # the figures at the threshold chosen on validation, as summary_figures reports
    rows = read_rows(run / f"scores_{split}.csv")
    assert len(rows) == metrics["n"] and len({r["image"] for r in rows}) == len(rows)
    keys = [float(r[worst]) for r in rows]
    assert keys == sorted(keys, reverse=worst == "rand_error")
    tp, fp, fn, wrong, pixels = (sum(int(r[k]) for r in rows) for k in ("tp", "fp", "fn", "wrong", "pixels"))
    assert f1_of(tp, fp, fn) == pytest.approx(at["f1"], abs=1e-9)
    assert wrong / pixels == pytest.approx(at["pixel_error"], abs=1e-12)
    for r in rows:
        assert float(r["f1"]) == pytest.approx(f1_of(int(r["tp"]), int(r["fp"]), int(r["fn"])), abs=1e-9)
        assert float(r["pixel_error"]) == pytest.approx(int(r["wrong"]) / int(r["pixels"]))
    decodes(run / "plots" / f"overlays_{split}.png")
    return rows


def test_isbi_evaluation_writes_scores_worst_first_and_overlays(isbi_patch_run):
    """Training ended with the evaluation of val (slices 20-24) and test (25-29): the test split (the report's) left
    its table and grid."""
    assert not (isbi_patch_run / "scores_val.csv").exists()
    for split in ("test",):
        rows = check_segmentation_table(isbi_patch_run, split, "rand_error")
        assert len(rows) == 5 and sum(int(r["pixels"]) for r in rows) == 5 * 512 * 512  # ISBI has no roi
        assert all(0 <= float(r["rand_error"]) <= 1 for r in rows)
        assert float(rows[0]["rand_error"]) > float(rows[-1]["rand_error"])  # the worst slice leads, by a margin


def test_image_scores_count_pixels_inside_the_roi_at_the_threshold():
    from matplotlib.colors import to_rgba

    from medconv.data.segmentation import SegImage
    from medconv.report.overlays import FALSE_POSITIVE, HIT, MISS, agreement_rgba
    from medconv.segment.pictures import image_scores, worst_first

    truth = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    p1 = np.array([[0.9, 0.4, 0.7, 0.1], [0.8, 0.1, 0.2, 0.6], [0.1, 0.1, 0.1, 0.7]])
    roi = np.ones_like(truth, bool)
    roi[:, 3] = False  # the last column is not scored
    row = image_scores(SegImage("a", np.zeros((1, 3, 4), np.float32), truth, roi), np.stack([1 - p1, p1]), 0.5, False)
    assert (row["pixels"], row["tp"], row["fp"], row["fn"], row["wrong"]) == (9, 2, 1, 1, 2)
    assert row["f1"] == pytest.approx(4 / 6) and row["pixel_error"] == pytest.approx(2 / 9)
    layer = agreement_rgba(p1 > 0.5, truth == 1, roi)
    assert tuple(layer[0, 0]) == pytest.approx(to_rgba(HIT, 0.45)) and tuple(layer[0, 2]) == pytest.approx(
        to_rgba(FALSE_POSITIVE, 0.45)) and tuple(layer[0, 1]) == pytest.approx(to_rgba(MISS, 0.45))
    assert layer[1, 3, 3] == 0 and layer[2, 3, 3] == 0 and layer[2, 0, 3] == 0  # outside the roi, true negative
    rows = [{"f1": 0.8, "pixel_error": 0.1}, {"f1": float("nan"), "pixel_error": 0.0}, {"f1": 0.2, "pixel_error": 0.3}]
    assert [r["f1"] for r in worst_first(rows)][:2] == [0.2, 0.8]  # NaN (no foreground anywhere) last


def test_detector_evaluation_writes_per_image_counts_that_add_up(crc_detector):
    """Each detection evaluation (val: the selection images; test) left its table, overlays and F1 curve; the
    disc masks' segmentation evaluation of the same run left its own, by F1."""
    run, _ = crc_detector
    for split in ("val", "test"):
        scored = json.loads((run / f"detect_{split}.json").read_text())
        rows = read_rows(run / f"scores_detect_{split}.csv")
        assert len(rows) == scored["images"] == len({r["image"] for r in rows})
        f1 = [float(r["f1"]) for r in rows]
        assert f1 == sorted(f1) and f1[0] < f1[-1]
        totals = {k: sum(int(r[k]) for r in rows) for k in ("hits", "false_positives", "misses", "true", "found")}
        assert (totals["hits"], totals["false_positives"], totals["misses"]) == (scored["tp"], scored["fp"], scored["fn"])
        assert totals["true"] == scored["tp"] + scored["fn"] and totals["found"] == scored["tp"] + scored["fp"]
        for r in rows:
            tp, fp, fn = int(r["hits"]), int(r["false_positives"]), int(r["misses"])
            assert float(r["f1"]) == pytest.approx(f1_of(tp, fp, fn), abs=1e-12)
            assert float(r["precision"]) == pytest.approx(tp / (tp + fp) if tp + fp else 0.0, abs=1e-12)
            assert float(r["recall"]) == pytest.approx(tp / (tp + fn) if tp + fn else 0.0, abs=1e-12)
        decodes(run / "plots" / f"overlays_detect_{split}.png")
        decodes(run / "plots" / f"f1_threshold_detect_{split}.png")
    check_segmentation_table(run, "test", "f1")  # the disc masks' pictures: of the last split scored


def test_f1_threshold_sweep_gives_the_reported_f1_at_the_chosen_threshold(crc_detector):
    """The sweep over the validation maps (made again here, as tune_detector made them) at the chosen threshold
    is exactly the reported detection score; recall and the number of detections never rise with the threshold."""
    from medconv.detect.hard_negatives import centre_maps, detection_maps
    from medconv.detect.peaks import find_peaks, read_params
    from medconv.detect.pictures import STEPS, f1_threshold_sweep
    from medconv.detect.pipeline import run_config
    from medconv.detect.tuning import THRESHOLDS
    from medconv.segment.data import load_data

    run, _ = crc_detector
    params, scored = read_params(run), json.loads((run / "detect_val.json").read_text())
    images = [im for im in load_data(run_config(run))[1]["val"] if im.points is not None]
    maps = centre_maps(detection_maps(run, params)[1], images)
    peaks = [find_peaks(m, params["sigma"], params["min_distance"], min(THRESHOLDS) - 1e-6) for m in maps]
    sweep = f1_threshold_sweep(peaks, [im.points for im in images], scored["tolerance"], params["threshold"])
    thresholds = [r["threshold"] for r in sweep]
    assert thresholds == sorted(thresholds) and STEPS <= len(thresholds) <= STEPS + 1
    assert thresholds[0] == min(THRESHOLDS) and thresholds[-1] == max(THRESHOLDS)
    chosen = next(r for r in sweep if r["threshold"] == params["threshold"])
    assert {k: chosen[k] for k in ("tp", "fp", "fn")} == {k: scored[k] for k in ("tp", "fp", "fn")}
    assert chosen["f1"] == scored["f1"] and chosen["precision"] == scored["precision"]
    recall, found = [r["recall"] for r in sweep], [r["tp"] + r["fp"] for r in sweep]
    assert recall == sorted(recall, reverse=True) and found == sorted(found, reverse=True) and found[0] > found[-1]
