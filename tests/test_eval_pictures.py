"""The pictures evaluation adds to a classifier run for its report: precision-recall curves, the most confident
errors and Grad-CAM maps (plots/pr_, errors_, cam_{split}.png), for images and volumes."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score

from medconv.classify.pictures import confident_errors, even_sample, write_pictures
from medconv.metrics import MULTI_LABEL
from medconv.models.registry import build_model
from medconv.report.plots import plot_pr

CLASSES = ["a", "b", "c"]
pytestmark = pytest.mark.pictures  # the pictures are what these tests look at


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG that PIL decodes whole."""
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


def meta_of(classes=CLASSES, task="multi-class") -> dict:
    return {"mean": [0.5], "std": [0.25], "task": task, "classes": classes, "num_classes": len(classes)}


def scores_of(model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.eval()((x - 0.5) / 0.25).softmax(1).numpy()


def test_a_trained_run_has_pr_error_and_cam_pictures_of_its_test_split(breast_run):
    """Training scores val and test; the pictures are drawn for the test split (the report's)."""
    out, _ = breast_run
    assert (out / "plots" / "roc_val.png").is_file() and not (out / "plots" / "cam_val.png").exists()
    split = "test"
    rows = list(csv.DictReader((out / f"predictions_{split}.csv").read_text().splitlines()))
    labels = np.array([[int(r["label"])] for r in rows])
    scores = np.array([[float(r["prob_malignant"]), float(r["prob_normal, benign"])] for r in rows])
    assert len(confident_errors(labels, scores, "binary-class")) > 0  # so errors_{split}.png is due
    for kind in ("pr", "errors", "cam"):
        width, height = png_size(out / "plots" / f"{kind}_{split}.png")
        assert 300 < width < 2000 and 300 < height < 2000, (kind, width, height)
    with Image.open(out / "plots" / "cam_test.png") as cam:
        pixels = np.asarray(cam.convert("RGB")).astype(int)
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 60).mean() > 0.05  # jet colours, not a grey picture


def test_the_errors_chosen_are_errors_most_confident_first():
    labels = np.array([[0], [1], [2], [1], [0], [2], [1]])
    scores = np.array([[0.2, 0.7, 0.1],  # wrong: b at 0.7
                       [0.1, 0.8, 0.1],
                       [0.9, 0.05, 0.05],  # wrong: a at 0.9
                       [0.5, 0.2, 0.3],  # wrong: a at 0.5
                       [0.6, 0.3, 0.1],
                       [0.1, 0.2, 0.7],
                       [0.1, 0.2, 0.7]])  # wrong: c at 0.7, after image 0 (ties in index order)
    assert confident_errors(labels, scores, "multi-class").tolist() == [2, 0, 6, 3]
    assert confident_errors(labels, scores, "multi-class", limit=2).tolist() == [2, 0]
    assert confident_errors(labels[[1, 4, 5]], scores[[1, 4, 5]], "multi-class").tolist() == []
    assert confident_errors(np.eye(3, dtype=int)[labels[:, 0]], scores, MULTI_LABEL).tolist() == []

    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(4), size=200)
    labels = rng.integers(0, 4, size=(200, 1))
    chosen = confident_errors(labels, scores, "multi-class")
    confidence = scores[chosen, scores[chosen].argmax(1)]
    assert len(chosen) == 16 and (scores[chosen].argmax(1) != labels[chosen, 0]).all()
    assert (np.diff(confidence) <= 0).all()
    wrong = scores.argmax(1) != labels[:, 0]
    assert confidence[-1] >= scores[np.setdiff1d(np.flatnonzero(wrong), chosen)].max()  # none left out beats them


def test_the_average_precision_in_the_pr_legend_is_sklearns(tmp_path):
    y = np.array([[0], [0], [1], [1]])
    positive = np.array([0.1, 0.4, 0.35, 0.8])
    found = plot_pr(y, np.stack([1 - positive, positive], 1), "binary-class", ["no", "yes"], tmp_path / "pr.png")
    assert found == {"yes": pytest.approx(0.8333333, abs=1e-6)}  # hand count: (1/2)(1) + (1/2)(2/3)
    assert png_size(tmp_path / "pr.png")[0] > 300

    rng = np.random.default_rng(1)
    scores = rng.dirichlet(np.ones(3), size=60)
    labels = rng.integers(0, 3, size=(60, 1))
    found = plot_pr(labels, scores, "multi-class", CLASSES, tmp_path / "pr3.png")
    assert found == {c: pytest.approx(average_precision_score(labels[:, 0] == i, scores[:, i]), abs=1e-12)
                     for i, c in enumerate(CLASSES)}
    multi = rng.integers(0, 2, size=(60, 3))
    multi[:, 2] = 0  # a label never present has no curve
    found = plot_pr(multi, scores, MULTI_LABEL, CLASSES, tmp_path / "prm.png")
    assert found == {c: pytest.approx(average_precision_score(multi[:, i], scores[:, i]), abs=1e-12)
                     for i, c in enumerate(CLASSES[:2])}


def test_the_cam_sample_is_evenly_spaced_and_the_same_each_time():
    assert even_sample(100).tolist() == [0, 14, 28, 42, 57, 71, 85, 99]
    assert even_sample(5).tolist() == [0, 1, 2, 3, 4] and even_sample(0).tolist() == []


def test_a_volume_classifier_gets_its_pictures_from_axial_slices(tmp_path):
    torch.manual_seed(0)
    model = build_model("cnn3d", 1, 3, (16, 16, 16), widths=[4, 8])
    volumes = torch.rand(12, 1, 16, 16, 16)
    scores = scores_of(model, volumes)
    labels = (scores.argmax(1)[:, None] + np.arange(12)[:, None] % 2) % 3  # every other volume wrong
    written = write_pictures(model, meta_of(), volumes, labels, scores, "multi-class", CLASSES, tmp_path, "test",
                             "cpu", title="fake test:")
    assert [p.name for p in written] == ["pr_test.png", "errors_test.png", "cam_test.png"]
    assert all(png_size(p)[0] > 300 for p in written)
    assert model.training is False and all(p.grad is None for p in model.parameters())  # the run's model untouched


def test_no_errors_no_error_picture_and_no_convolution_no_cam(tmp_path):
    torch.manual_seed(0)
    model = build_model("mlp", 1, 3, (8, 8))
    images = (torch.rand(9, 1, 8, 8) * 255).to(torch.uint8)  # as an ImageSet holds 8-bit images
    scores = scores_of(model, images.float() / 255)
    for stale in ("errors_val.png", "cam_val.png"):  # an earlier evaluation's, not to be shown as this one's
        (tmp_path / stale).write_bytes(b"old")
    written = write_pictures(model, meta_of(), images, scores.argmax(1)[:, None], scores, "multi-class", CLASSES,
                             tmp_path, "val", "cpu")
    assert [p.name for p in written] == ["pr_val.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pr_val.png"]


def test_a_multi_label_task_gets_pr_and_cam_but_no_error_grid(tmp_path):
    torch.manual_seed(0)
    model = build_model("simple-cnn", 1, 3, (16, 16), widths=[4, 8], hidden=[8])
    images = torch.rand(6, 1, 16, 16)
    with torch.no_grad():
        scores = model.eval()((images - 0.5) / 0.25).sigmoid().numpy()
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1]])
    written = write_pictures(model, meta_of(task=MULTI_LABEL), images, labels, scores, MULTI_LABEL, CLASSES,
                             tmp_path, "test", "cpu")
    assert [p.name for p in written] == ["pr_test.png", "cam_test.png"]
