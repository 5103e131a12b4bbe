"""Per-image scores of a 2D segmentation for a run's report: pixels counted inside the roi at the threshold, the
agreement colours, worst first. (The tables and pictures of trained runs are checked in test_segment_cli.py and
test_detect_pipeline.py, beside the fixtures that train them.)"""
from __future__ import annotations

import numpy as np
import pytest


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
