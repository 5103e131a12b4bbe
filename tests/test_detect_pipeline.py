"""`medconv detect train|predict|evaluate` on CRCHistoPhenotypes: discs -> centre map -> peaks -> matched F1."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np

from medconv.detect.targets import disc_mask, proximity_map
from medconv.detect.tuning import tune


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
    assert {"sigma", "min_distance", "threshold"} <= set(params) and params["tta"] in ("none", "d4")
    assert "test-time augmentation d4: best validation F1" in trained.stderr  # both were tried on validation
    masks = json.loads((run / "metrics.json").read_text())  # disc masks scored again at the validation threshold
    chosen = json.loads((run / "threshold.json").read_text())["threshold"]
    assert masks["test"]["at_threshold"]["threshold"] == chosen and "f1" in masks["test"]["at_threshold"]
    scored = json.loads(medconv("detect", "evaluate", run, "--json").stdout)
    assert scored["f1"] > 0.4 and scored["tp"] + scored["fn"] == 2853  # the 10 validation images' centres
    assert (run / "plots" / "precision_recall_val.png").exists() and len(list((run / "overlays").glob("*.png"))) == 10
    image = data_root / "crchistophenotypes" / "images" / "img4.png"
    predicted = medconv("detect", "predict", run, image, "--out", tmp_path / "d.csv")
    assert predicted.returncode == 0, predicted.stderr
    rows = list(csv.DictReader(open(tmp_path / "d.csv")))
    xs, ys = np.array([float(r["x"]) for r in rows]), np.array([float(r["y"]) for r in rows])
    assert len(rows) > 20 and xs.min() >= 1 and ys.max() <= 500  # 1-based, inside the 500 x 500 image
    classifier = medconv("train", "--dataset", "crchistophenotypes", "--data-root", data_root, "--arch", "simple-cnn",
                         "--epochs", "1", "--train-fraction", "0.02", "--threads", "1", "--model-option",
                         "widths=8,16", "--model-option", "hidden=16", "--out", tmp_path / "cls")
    assert classifier.returncode == 0, classifier.stderr
    typed = medconv("detect", "predict", run, image, "--classifier", tmp_path / "cls", "--nms-radius", "10",
                    "--tta", "flip", "--out", tmp_path / "typed.csv")
    assert typed.returncode == 0, typed.stderr
    typed_rows = list(csv.DictReader(open(tmp_path / "typed.csv")))
    kinds = {"epithelial", "fibroblast", "inflammatory", "others"}
    assert 0 < len(typed_rows) < len(rows) and {r["class"] for r in typed_rows} <= kinds
    kept = np.array([[float(r["y"]), float(r["x"])] for r in typed_rows])
    gaps = np.sqrt(((kept[:, None] - kept[None]) ** 2).sum(-1)) + np.eye(len(kept)) * 99
    assert gaps.min() > 10  # non-maximum suppression within 10 px
    second = medconv("detect", "train", "--dataset", "crchistophenotypes", "--data-root", data_root, "--patch", "15",
                     "--model-option", "widths=8,16", "--model-option", "kernels=3,3", "--model-option", "hidden=32",
                     "--epochs", "1", "--samples-per-epoch", "256", "--threads", "1", "--hard-negatives", run,
                     "--out", tmp_path / "hard")
    assert second.returncode == 0, second.stderr
    assert int(second.stderr.split("hard negatives: ")[1].split()[0]) > 0  # the first run's false positives
    from medconv.detect.hard_negatives import false_positives
    from medconv.detect.pipeline import run_config
    from medconv.segment.train import load_data
    val = load_data(run_config(run))[1]["val"]
    assert len(false_positives(run, val, 6.0)) == scored["fp"]  # on the validation images: evaluate's count


def test_detections_are_classified_on_the_patches_the_classifier_saw(tmp_path, data_root):
    from medconv.config import TrainConfig
    from medconv.data import load_dataset
    from medconv.data.images import read_image
    from medconv.detect.pipeline import classify_detections
    from medconv.classify.predict import predict_scores
    from medconv.training.checkpoint import load_model
    from medconv.classify.train import train

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
    retuned = medconv("detect", "tune", run, "--tolerance-um", "4", "--tta", "none")
    assert retuned.returncode == 0, retuned.stderr
    params = json.loads((run / "detect.json").read_text())
    assert params["tolerance"] == 8.0 and params["tta"] == "none"
    assert json.loads((run / "detect_val.json").read_text())["tolerance"] == 8.0
    assert medconv("detect", "tune", run, "--tta", "none,spin").returncode == 2


def test_proximity_map_peaks_at_centres_and_vanishes_beyond_the_radius():
    prox = proximity_map((20, 30), np.array([[5.0, 5.0], [10.2, 20.4]]), radius=3)
    assert prox[5, 5] == 1 and prox[10, 20] == 1  # centres rounded to pixels
    assert np.isclose(prox[5, 6], 2 / 3) and np.isclose(prox[7, 5], 1 / 3) and np.isclose(prox[7, 7], 1 / 5)
    assert prox[5, 9] == 0 and prox[0, 29] == 0  # farther than the radius from both centres
    assert proximity_map((4, 4), np.zeros((0, 2)), 3).sum() == 0


def test_soft_targets_label_patches_and_tiles_and_set_the_loss():
    import torch

    from medconv.data.patches import PatchSampler
    from medconv.data.segmentation import SegImage
    from medconv.segment.config import parse_augment
    from medconv.segment.train import TileSampler, augment_tiles, segmentation_loss

    rng = np.random.default_rng(0)
    centres = np.array([[8.0, 8.0], [20.0, 25.0]])
    im = SegImage("a", rng.random((3, 32, 32), dtype=np.float32), disc_mask((32, 32), centres, 3), points=centres,
                  target=proximity_map((32, 32), centres, 3))
    sampler = PatchSampler([im], 9)
    img, y, x = sampler.centres(64, torch.Generator().manual_seed(0))
    patches, labels = sampler.extract(img, y, x)
    assert labels.dtype == torch.float32 and torch.equal(labels, torch.from_numpy(im.target[y, x]))
    assert (labels > 0).float().mean() > 0.3  # class balance still draws centres within the discs
    tiles, soft, no_weights = TileSampler([im], 16).sample(4, torch.Generator().manual_seed(1))
    assert soft.dtype == torch.float32 and soft.shape == (4, 16, 16) and no_weights is None
    aug = parse_augment("flips=1,rot90=1,intensity=0.1")
    moved, moved_soft, _ = augment_tiles(tiles, soft, torch.Generator().manual_seed(2), aug, 2)
    assert moved.shape == tiles.shape and sorted(moved_soft.flatten().tolist()) == sorted(soft.flatten().tolist())
    logits = torch.randn(4, 2, 16, 16)
    expected = -(torch.stack([1 - soft, soft], 1) * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(segmentation_loss(logits, soft, None), expected)


def test_detector_from_proximity_maps_chooses_its_checkpoint_on_detection_f1(tmp_path, data_root, medconv):
    run = tmp_path / "prox"
    trained = medconv("detect", "train", "--dataset", "crchistophenotypes", "--data-root", data_root, "--mode",
                      "dense", "--tile", "32", "--model-option", "features=4,4,8,8,16,4", "--target", "proximity",
                      "--select-metric", "detection_f1", "--epochs", "2", "--samples-per-epoch", "8", "--batch-size",
                      "4", "--threads", "1", "--out", run)
    assert trained.returncode == 0, trained.stderr
    history = list(csv.DictReader(open(run / "history.csv")))
    assert len(history) == 2 and all(0 <= float(r["val_detection_f1"]) <= 1 for r in history)
    best = max(range(2), key=lambda i: float(history[i]["val_detection_f1"]))
    assert "proximity maps" in trained.stderr and (run / "detect.json").exists()
    assert "the detection scores follow" in trained.stderr.replace("\n", " ")  # no pixel figures at 0.5 for soft maps
    from medconv.segment.evaluate import load_segmenter
    assert load_segmenter(run)[1]["epoch"] == best + 1
    refused = medconv("segment", "train", "--dataset", "isbi2012", "--data-root", data_root, "--target", "proximity",
                      "--out", tmp_path / "no")
    assert refused.returncode == 2 and "point annotations" in refused.stderr
    image = data_root / "crchistophenotypes" / "images" / "img4.png"
    by_torch = medconv("detect", "predict", run, image, "--tta", "flip", "--out", tmp_path / "torch.csv")
    assert by_torch.returncode == 0 and "(torch)" in by_torch.stderr, by_torch.stderr
    exported = medconv("export", run)
    assert exported.returncode == 0, exported.stderr
    assert (run / "model.onnx").exists() and float(exported.stdout.split("torch ")[1].rstrip(")\n")) < 1e-4
    # the exported detector in a process that must not import torch: the same detections
    check = ("import sys; from medconv.cli import main; code = main(sys.argv[1:]); "
             "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")
    by_onnx = subprocess.run([sys.executable, "-c", check, "detect", "predict", str(run), str(image), "--tta", "flip",
                              "--out", str(tmp_path / "onnx.csv")], capture_output=True, text=True)
    assert by_onnx.returncode == 0 and "(onnxruntime)" in by_onnx.stderr, by_onnx.stderr
    rows = [sorted(csv.DictReader(open(tmp_path / f"{engine}.csv")), key=lambda r: (float(r["y"]), float(r["x"])))
            for engine in ("torch", "onnx")]  # by position: equal scores may come in either order
    assert len(rows[0]) == len(rows[1]) > 0
    for a, b in zip(*rows):
        assert (a["x"], a["y"]) == (b["x"], b["y"]) and abs(float(a["score"]) - float(b["score"])) < 1e-5
    (run / "checkpoints" / "best.safetensors").touch()  # a newer checkpoint: the export is stale, torch is used
    stale = medconv("detect", "predict", run, image, "--out", tmp_path / "again.csv")
    assert stale.returncode == 0 and "(torch)" in stale.stderr, stale.stderr
    not_dense = medconv("export", tmp_path / "no-such-run")
    assert not_dense.returncode == 2 and "Traceback" not in not_dense.stderr


def test_hard_examples_are_drawn_as_their_fraction_of_each_batch():
    import torch

    from medconv.data.patches import PatchSampler
    from medconv.data.segmentation import SegImage

    rng = np.random.default_rng(0)
    images = [SegImage(n, rng.random((1, 24, 24), dtype=np.float32), disc_mask((24, 24), np.array([[12.0, 12.0]]), 3))
              for n in "ab"]
    sampler = PatchSampler(images, 5)
    sampler.add_hard(np.array([[1, 2, 20], [0, 21, 3]]), 0.5)
    img, y, x = sampler.centres(4000, torch.Generator().manual_seed(0))
    hard = ((img == 1) & (y == 2) & (x == 20)) | ((img == 0) & (y == 21) & (x == 3))
    assert 0.45 < hard.mean() < 0.55 and 0.2 < ((img == 1) & (y == 2) & (x == 20)).mean() < 0.3
    labels = sampler.extract(img, y, x)[1].numpy()
    assert (labels[hard] == 0).all() and 0.2 < labels.mean() < 0.3  # the rest still class-balanced


def test_test_time_augmentation_is_chosen_only_for_a_clear_gain(tmp_path):
    from rich.console import Console

    from medconv.data.segmentation import SegImage
    from medconv.detect.pipeline import tune_run

    rng = np.random.default_rng(1)
    truth = rng.uniform(10, 90, (15, 2))
    yy, xx = np.mgrid[:100, :100]
    clean = np.clip(sum(np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8) for y, x in truth), 0, 1)
    decoys = rng.uniform(10, 90, (8, 2))  # peaks as strong as the true ones: no threshold removes them
    noisy = np.clip(clean + sum(np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8) for y, x in decoys), 0, 1)
    val = [SegImage("a", np.zeros((1, 100, 100), np.float32), points=truth)]
    quiet = Console(file=open(tmp_path / "log.txt", "w"))
    assert tune_run(tmp_path, {"none": [noisy], "d4": [clean]}, val, 3, quiet)["tta"] == "d4"
    assert tune_run(tmp_path, {"none": [clean], "d4": [clean]}, val, 3, quiet)["tta"] == "none"  # equal: no gain
