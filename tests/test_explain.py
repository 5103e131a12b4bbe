"""Explanations (issue 25, item 2): Grad-CAM and occlusion maps of any classifier, 2D and 3D, through MONAI's
monai.visualize, and `medconv explain` writing them over the inputs."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_in_process
from medconv.analysis.explain import explain, explain_files, target_layer
from medconv.classify.predict import inputs_like_training
from medconv.classify.train import train
from medconv.config import TrainConfig
from medconv.data.transforms import normalise
from medconv.data.types import unit_float
from medconv.errors import UserError
from medconv.models.registry import build_model
from medconv.training.checkpoint import load_model
from test_volumes3d import volume_manifest

SIDE, SQUARE = 32, 6


def squares(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey noise images (N, 32, 32) uint8, each with a distractor (a bright 6x6 ring) anywhere, and in class 1 a
    bright filled 6x6 square at a random place in the top-left quadrant, which alone decides the class. Returns
    the images, the labels (N,) and the squares' top-left corners (N, 2) (drawn only in class 1)."""
    x = rng.normal(100, 25, (n, SIDE, SIDE))
    y = rng.integers(0, 2, n)
    corners = rng.integers(0, SIDE // 2 - SQUARE + 1, (n, 2))
    for i in range(n):
        r, c = rng.integers(0, SIDE - SQUARE + 1, 2)
        x[i, r:r + SQUARE, c:c + SQUARE] = 220
        x[i, r + 1:r + SQUARE - 1, c + 1:c + SQUARE - 1] = rng.normal(100, 25, (SQUARE - 2, SQUARE - 2))
        if y[i]:
            r, c = corners[i]
            x[i, r:r + SQUARE, c:c + SQUARE] = 220
    return x.clip(0, 255).astype(np.uint8), y, corners


@pytest.fixture(scope="module")
def square_run(tmp_path_factory):
    """(run directory, test images (N, 32, 32) uint8, labels, square corners): a small CNN trained on squares."""
    rng = np.random.default_rng(0)
    (x, y, _), (xv, yv, _), test = squares(800, rng), squares(200, rng), squares(100, rng)
    cfg = TrainConfig(arch="simple-cnn", model_options={"widths": [8, 16], "hidden": [16]}, epochs=6, batch_size=32,
                      lr=3e-3, seed=0, deterministic=True)
    out = tmp_path_factory.mktemp("explain") / "squares"
    result = train(cfg, out, data={"train": (x, y), "val": (xv, yv)})
    assert result["val"]["auc"] > 0.9
    return (out, *test)


def peak_rate(maps: np.ndarray, corners: np.ndarray) -> float:
    """The share of maps (N, H, W) whose highest pixel lies inside the square at corners (N, 2)."""
    peaks = [np.unravel_index(m.argmax(), m.shape) for m in maps]
    return float(np.mean([r <= pr < r + SQUARE and c <= pc < c + SQUARE for (pr, pc), (r, c) in zip(peaks, corners)]))


def test_gradcam_and_occlusion_peak_inside_the_square_that_decides_the_class(square_run):
    run, images, labels, corners = square_run
    model, meta = load_model(run)
    ones = labels == 1
    x = normalise(torch.from_numpy(images[ones][:, None]).float() / 255, meta["mean"], meta["std"])
    assert target_layer(model, x) == "features.10"  # the last convolution (block 2's second), before pooling
    for method, rate in (("gradcam", 0.9), ("occlusion", 0.7)):
        maps = explain(model, x, method).numpy()
        assert maps.shape == (len(x), SIDE, SIDE) and maps.min() >= 0 and maps.max() == pytest.approx(1)
        # gradcam: 100% here; occlusion about 90% (its 9x9 box blurs the peak towards the square's edge)
        assert peak_rate(maps, corners[ones]) >= rate, method
    # Grad-CAM weighs each feature map by its gradient averaged over the image: when only *where* a square
    # lies decided the class (the same squares in the other quadrants as distractors), it marked both squares and
    # peaked on the deciding one in about 60% of the images, occlusion in about 90% (tried while writing this).


def test_the_class_explained_can_be_chosen_and_a_layer_named(square_run):
    run, images, _, _ = square_run
    model, meta = load_model(run)
    x = normalise(torch.from_numpy(images[:8, None]).float() / 255, meta["mean"], meta["std"])
    zero, one = explain(model, x, class_index=0), explain(model, x, class_index=[1] * 8)
    assert not torch.allclose(zero, one)
    assert explain(model, x, layer="features.7").shape == (8, SIDE, SIDE)  # block 2's first convolution
    with pytest.raises(UserError, match="features.10"):  # the message names layers that would do
        explain(model, x, layer="features.99")
    with pytest.raises(UserError, match="not a feature map"):
        explain(model, x, layer="classifier.2")
    with pytest.raises(UserError, match="occlusion reads no layer"):
        explain(model, x, "occlusion", layer="features.10")
    lenet = build_model("lenet5", 1, 2, (32, 32))  # its last convolution, C5, leaves one position: C3 it is
    assert target_layer(lenet, torch.zeros(1, 1, 32, 32)) == "c3"


def test_a_3d_classifier_gets_maps_of_its_volumes_shape_and_pictures(tmp_path):
    manifest = volume_manifest(tmp_path / "v")
    cfg = TrainConfig(manifest=str(manifest), arch="cnn3d", model_options={"widths": [4, 8], "convs_per_block": 1},
                      epochs=1, batch_size=4, seed=0)
    train(cfg, tmp_path / "run")
    model, meta = load_model(tmp_path / "run")
    files = [tmp_path / "v" / "case00.nii.gz", tmp_path / "v" / "case01.nii.gz"]
    volumes, _ = inputs_like_training(files, meta)
    x = normalise(unit_float(volumes), meta["mean"], meta["std"])
    for method in ("gradcam", "occlusion"):
        maps = explain(model, x, method, task=meta["task"])
        assert maps.shape == (2, *meta["input_size"]) and maps.min() >= 0 and maps.max() <= 1
    rows = explain_files(tmp_path / "run", [str(f) for f in files], tmp_path / "why")
    assert [r["path"] for r in rows] == [str(f) for f in files]
    assert all((tmp_path / "why" / f"case0{i}_gradcam.png").stat().st_size > 1000 for i in (0, 1))
    depth, height, width = meta["input_size"]
    assert all(0 <= r["peak_d"] < depth and 0 <= r["peak_h"] < height and 0 <= r["peak_w"] < width for r in rows)


def test_the_command_writes_a_picture_and_a_row_per_image(square_run, tmp_path):
    run, images, labels, _ = square_run
    paths = []
    for i in np.flatnonzero(labels == 1)[:3]:
        paths.append(tmp_path / f"image{i}.png")
        Image.fromarray(images[i]).save(paths[-1])
    done = run_in_process("explain", run, *paths, "--out", tmp_path / "why", "--class", "1")
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "why" / "gradcam.csv") as fh:
        written = list(csv.DictReader(fh))
    printed = list(csv.DictReader(done.stdout.splitlines()[1:]))
    assert printed == written and [r["path"] for r in written] == [str(p) for p in paths]
    for row, path in zip(written, paths):
        assert row["method"] == "gradcam" and row["class"] == "1" and 0.5 < float(row["probability"]) <= 1
        assert (tmp_path / "why" / f"{path.stem}_gradcam.png").stat().st_size > 1000
        assert {"peak_h", "peak_w"} <= set(row) and "peak_d" not in row
