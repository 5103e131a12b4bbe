"""Checks of the per-image score tables and pictures evaluation leaves for a run's report (imported by the test
files whose fixtures trained the runs: test_segment_cli, test_detect_pipeline)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

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
