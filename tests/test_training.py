"""Training on real BreastMNIST end to end: the run directory, evaluate and predict agree."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from medconv.config import TrainConfig
from medconv.classify.train import train


def test_short_run_reaches_stated_auc_and_writes_a_complete_run(breast_run):
    out, result = breast_run
    # 15 epochs of a ~100K-weight CNN; the published ResNet-18 (28) reaches 0.901
    assert result["test"]["auc"] >= 0.80
    assert result["test"]["n"] == 156 and result["val"]["n"] == 78
    for name in ["config.yaml", "history.csv", "metrics.json", "metrics_test.json", "predictions_test.csv",
                 "checkpoints/best.safetensors", "checkpoints/best.json", "checkpoints/last.safetensors",
                 "plots/training_curves.png", "plots/roc_test.png", "plots/confusion_test.png"]:
        assert (out / name).exists(), name
    meta = json.loads((out / "checkpoints" / "best.json").read_text())
    assert meta["arch"] == "simple-cnn" and meta["classes"] == ["malignant", "normal, benign"]
    assert meta["input_size"] == [28, 28] and "torch" in meta["versions"]
    history = list(csv.DictReader(open(out / "history.csv")))
    assert len(history) == 15
    assert max(float(r["val_auc"]) for r in history) == pytest.approx(result["val"]["auc"], abs=1e-4)


def test_evaluate_cli_reproduces_training_metrics(breast_run, medconv):
    out, result = breast_run
    proc = medconv("evaluate", out, "--split", "test", "--json")  # the evaluate verb's one test in a new process
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics["auc"] == pytest.approx(result["test"]["auc"], abs=1e-9)
    assert metrics["acc"] == pytest.approx(result["test"]["acc"], abs=1e-9)
    assert len(metrics["confusion_matrix"]) == 2 and "per_class" in metrics


def test_predict_on_png_files_equals_evaluation_scores(breast_run, data_root, tmp_path, medconv):
    out, _ = breast_run
    images = np.load(data_root / "medmnist" / "breastmnist.npz")["test_images"][:12]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"case{i:02d}.png")
    proc = medconv("predict", out, tmp_path, "--out", tmp_path / "preds.csv")  # the predict verb's one new process
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(tmp_path / "preds.csv")))
    expected = list(csv.DictReader(open(out / "predictions_test.csv")))[:12]
    assert len(rows) == 12
    for row, ref in zip(rows, expected):
        assert float(row["prob_normal, benign"]) == pytest.approx(float(ref["prob_normal, benign"]), abs=1e-5)
        assert float(row["prob_malignant"]) + float(row["prob_normal, benign"]) == pytest.approx(1, abs=1e-5)


def test_predict_repeats_resize_and_tta_of_the_run(tmp_path, data_root, cli):
    run = tmp_path / "resized"
    cfg = TrainConfig(dataset="breastmnist", data_root=str(data_root), arch="simple-cnn", resize=56, tta="flip",
                      model_options={"widths": [8, 16], "hidden": [16]}, epochs=1, batch_size=64)
    train(cfg, run)
    images = np.load(data_root / "medmnist" / "breastmnist.npz")["test_images"][:6]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"case{i}.png")
    proc = cli("predict", run, *[tmp_path / f"case{i}.png" for i in range(6)])
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(proc.stdout.splitlines()))  # a class name with a comma stays one column
    expected = list(csv.DictReader(open(run / "predictions_test.csv")))[:6]
    for row, ref in zip(rows, expected):
        assert float(row["prob_normal, benign"]) == pytest.approx(float(ref["prob_normal, benign"]), abs=1e-5)


def test_resume_may_add_epochs_but_not_change_the_model(tmp_path, medconv, cli):
    run = tmp_path / "run"
    tiny = ["--dataset", "synthetic", "--model-option", "widths=[4]", "--model-option", "hidden=[8]"]
    first = medconv("train", *tiny, "--epochs", "1", "--out", run)  # the train verb's one test in a new process
    assert first.returncode == 0, first.stderr
    proc = cli("train", "--out", run, "--resume", "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    assert f"report -> {run / 'report.html'}" in proc.stderr  # rewritten after every training and evaluation
    resumed = json.loads((run / "metrics.json").read_text())["test"]["auc"]
    assert f"<td>{resumed:.4g}</td>" in (run / "report.html").read_text()
    proc = cli("train", "--out", run, "--resume", "--arch", "simple-cnn", "--lr", "0.1")
    assert proc.returncode == 2 and "--lr cannot change" in proc.stderr


def test_mixup_blends_pairs_and_their_losses(tmp_path):
    import torch

    from medconv.classify.train import mixed_batch
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y, logits = torch.rand(8, 1, 4, 4), torch.tensor([0, 1] * 4), torch.randn(8, 2)
    same, plain = mixed_batch(x, y, loss_fn, 0.0)
    assert same is x and plain(logits) == loss_fn(logits, y)
    torch.manual_seed(3)
    mixed, criterion = mixed_batch(x, y, loss_fn, 0.4)
    torch.manual_seed(3)
    lam, perm = float(torch.distributions.Beta(0.4, 0.4).sample()), torch.randperm(8)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
    torch.testing.assert_close(criterion(logits), lam * loss_fn(logits, y) + (1 - lam) * loss_fn(logits, y[perm]))
    # one epoch with mixup on images whose class is a known, separable signal: class 1 is 96 grey levels brighter
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 512), ("val", 128), ("test", 128)):
        labels = rng.permutation(np.arange(n) % 2)
        arrays[f"{split}_images"] = (rng.integers(0, 160, (n, 28, 28)) + 96 * labels[:, None, None]).astype(np.uint8)
        arrays[f"{split}_labels"] = labels[:, None].astype(np.uint8)
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    cfg = TrainConfig(dataset="breastmnist", data_root=str(tmp_path), model_options={"widths": [8], "hidden": [8]},
                      epochs=1, mixup=0.2, threads=1, deterministic=True)
    result = train(cfg, tmp_path / "mix")
    assert result["test"]["auc"] > 0.99 and result["test"]["acc"] > 0.95  # measured 1.0 and 1.0
    with pytest.raises(Exception, match="--mixup"):
        TrainConfig(mixup=-1).validate()


def test_weight_average_follows_the_hand_computed_ema():
    import torch

    from medconv.training.ema import WeightAverage, ema_decay
    assert ema_decay(0.99, 1) == pytest.approx(2 / 11) and ema_decay(0.99, 10_000) == 0.99
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, 0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in (1, 2, 3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].num_batches_tracked += 1
        average.update(model)
        d = ema_decay(0.9, step)
        for k, v in model.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v if v.is_floating_point() else v.clone()
    for k, v in average.model.state_dict().items():
        torch.testing.assert_close(v, expected[k])
    assert int(average.model[1].num_batches_tracked) == 3 and average.steps == 3


def test_ema_run_keeps_the_average_and_resumes_to_the_same_weights(tmp_path, data_root):
    import torch
    from safetensors.torch import load_file

    settings = dict(dataset="breastmnist", data_root=str(data_root), model_options={"widths": [8], "hidden": [8]},
                    batch_size=64, ema=0.9, threads=1, deterministic=True)
    train(TrainConfig(epochs=2, **settings), tmp_path / "full")
    train(TrainConfig(epochs=1, **settings), tmp_path / "parted")
    last = load_file(tmp_path / "parted" / "checkpoints" / "last.safetensors")
    best = load_file(tmp_path / "parted" / "checkpoints" / "best.safetensors")  # epoch 1 of 1: the best
    assert {k[len("ema."):] for k in last if k.startswith("ema.")} == {k[len("model."):] for k in best}
    assert all(torch.equal(best["model." + k[len("ema."):]], v) for k, v in last.items() if k.startswith("ema."))
    assert not all(torch.equal(best[k], last[k]) for k in best)  # the average, not the trained weights
    train(TrainConfig(epochs=2, **settings), tmp_path / "parted", resume=True, overrides={"epochs": 2})
    for name in ("last", "best"):
        a = load_file(tmp_path / "full" / "checkpoints" / f"{name}.safetensors")
        b = load_file(tmp_path / "parted" / "checkpoints" / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    with pytest.raises(Exception, match="--ema"):
        TrainConfig(ema=1.0).validate()

