"""`medconv detect train|predict|evaluate` on CRCHistoPhenotypes: discs -> centre map -> peaks -> matched F1."""
from __future__ import annotations

import csv
import json

import numpy as np

from medconv.detect.pipeline import disc_mask, tune


def test_disc_mask_and_tuning_on_known_maps():
    mask = disc_mask((20, 20), np.array([[5.0, 5.0], [0.0, 19.0]]), 2)
    assert mask[5, 5] == 1 and mask[5, 7] == 1 and mask[5, 8] == 0 and mask[0, 19] == 1 and mask.sum() == 13 + 6
    rng = np.random.default_rng(0)
    truth = rng.uniform(10, 90, (12, 2))
    yy, xx = np.mgrid[:100, :100]
    prob = sum(np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8) for y, x in truth) * 0.9
    prob = np.clip(prob + rng.uniform(0, 0.4, prob.shape), 0, 1)  # noise (mean 0.2): the threshold must rise above it
    best = tune([prob], [truth], tolerance=3)
    assert best["f1"] > 0.9 and best["threshold"] > 0.25


def test_detect_train_predict_evaluate(tmp_path, data_root, medconv):
    run = tmp_path / "det"
    trained = medconv("detect", "train", "--dataset", "crchistophenotypes", "--data-root", data_root, "--patch", "15",
                      "--model-option", "widths=8,16", "--model-option", "kernels=3,3", "--model-option", "hidden=32",
                      "--epochs", "1", "--samples-per-epoch", "1024", "--threads", "1", "--out", run)
    assert trained.returncode == 0, trained.stderr
    params = json.loads((run / "detect.json").read_text())
    assert {"sigma", "min_distance", "threshold"} <= set(params)
    scored = json.loads(medconv("detect", "evaluate", run, "--json").stdout)
    assert scored["f1"] > 0.4 and scored["tp"] + scored["fn"] == 2853  # the 10 validation images' centres
    assert (run / "plots" / "precision_recall_val.png").exists() and len(list((run / "overlays").glob("*.png"))) == 10
    image = data_root / "crchistophenotypes" / "images" / "img4.png"
    predicted = medconv("detect", "predict", run, image, "--out", tmp_path / "d.csv")
    assert predicted.returncode == 0, predicted.stderr
    rows = list(csv.DictReader(open(tmp_path / "d.csv")))
    xs, ys = np.array([float(r["x"]) for r in rows]), np.array([float(r["y"]) for r in rows])
    assert len(rows) > 20 and xs.min() >= 1 and ys.max() <= 500  # 1-based, inside the 500 x 500 image


def test_detections_are_classified_on_the_patches_the_classifier_saw(tmp_path, data_root):
    from medconv.config import TrainConfig
    from medconv.data import load_dataset
    from medconv.data.images import read_image
    from medconv.detect.pipeline import classify_detections
    from medconv.prediction import predict_scores
    from medconv.training.checkpoint import load_model
    from medconv.training.loop import train

    cfg = TrainConfig(dataset="crchistophenotypes", data_root=str(data_root), arch="simple-cnn", epochs=1,
                      train_fraction=0.02, threads=1, model_options={"widths": [8, 16], "hidden": [16]})
    train(cfg, tmp_path / "cls")
    _, sets = load_dataset(cfg)
    model, meta = load_model(tmp_path / "cls")
    test = sets["test"]
    pick = [i for i, path in enumerate(test.paths) if path.startswith("img4.png@")][:40]
    expected = predict_scores(model, test.images[pick], meta["mean"], meta["std"], meta["task"]).argmax(1)
    centres = np.array([[float(v) for v in test.paths[i].split("@")[1].split(",")][::-1] for i in pick]) - 1
    image = read_image(data_root / "crchistophenotypes" / "images" / "img4.png").transpose(2, 0, 1)
    typed = classify_detections(tmp_path / "cls", np.ascontiguousarray(image), centres)
    assert typed == [meta["classes"][k] for k in expected]


def test_detection_from_a_points_csv_with_a_tolerance_in_micrometres(tmp_path, data_root, medconv):
    folder = data_root / "crchistophenotypes"
    names = ["img1", "img2", "img3", "img5", "img6"]
    with open(folder / "detection_centroids.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["image"] in names]
    points = tmp_path / "points.csv"
    with open(points, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "x", "y"])
        writer.writeheader()
        writer.writerows({"image": r["image"] + ".png", "x": r["x"], "y": r["y"]} for r in rows)
    run = tmp_path / "det"
    trained = medconv("detect", "train", "--points", points, "--images", folder / "images", "--mpp", "0.5",
                      "--tolerance-um", "3", "--patch", "15", "--model-option", "widths=8,8",
                      "--model-option", "kernels=3,3", "--model-option", "hidden=16", "--epochs", "1",
                      "--samples-per-epoch", "256", "--threads", "1", "--out", run)
    assert trained.returncode == 0, trained.stderr
    assert json.loads((run / "detect.json").read_text())["tolerance"] == 6.0  # 3 um at 0.5 um per pixel
    scored = json.loads(medconv("detect", "evaluate", run, "--json").stdout)
    assert scored["images"] == 1 and scored["tp"] + scored["fn"] > 0  # 5 images: 3 train, 1 val, 1 test
    missing = medconv("detect", "evaluate", run, "--tolerance-um", "3")
    assert missing.returncode == 0  # the run's --mpp is used
