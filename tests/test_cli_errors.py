"""Bad input ends with one clear line, exit code 2, no traceback, and no run that looks complete. One case runs the
command in a new process (what a user sees); the others call medconv.cli.main in-process (the same code, no torch
import each)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from medconv.models.registry import build_model
from medconv.training.checkpoint import save_checkpoint

TINY = ["--arch", "simple-cnn", "--model-option", "widths=[4]", "--model-option", "hidden=[8]", "--epochs", "1"]


def assert_user_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_dataset_offline(tmp_path, medconv):
    proc = medconv("train", "--dataset", "pneumoniamnist", "--data-root", tmp_path / "empty", "--out", tmp_path / "run", *TINY)
    assert_user_error(proc, "pneumoniamnist.npz", "--download")
    assert not (tmp_path / "run").exists()


def test_corrupt_npz(tmp_path, cli):
    (tmp_path / "breastmnist.npz").write_bytes(np.random.default_rng(0).bytes(5000))
    proc = cli("train", "--dataset", "breastmnist", "--data-root", tmp_path, "--out", tmp_path / "run", *TINY)
    assert_user_error(proc, "breastmnist.npz", "not a readable MedMNIST file")
    assert not (tmp_path / "run").exists()


def test_label_outside_class_range(tmp_path, cli):
    images = np.zeros((4, 28, 28), np.uint8)
    labels = {"train": [[0], [1], [0], [5]], "val": [[0], [1], [0], [1]], "test": [[0], [1], [0], [1]]}
    np.savez(tmp_path / "breastmnist.npz", **{f"{s}_images": images for s in labels},
             **{f"{s}_labels": np.array(v, np.uint8) for s, v in labels.items()})
    proc = cli("train", "--dataset", "breastmnist", "--data-root", tmp_path, "--out", tmp_path / "run", *TINY)
    assert_user_error(proc, "[5]", "outside 0..1")
    assert not (tmp_path / "run").exists()


def test_corrupt_png_in_folder_dataset(tmp_path, cli):
    rng = np.random.default_rng(0)
    for cls in ("benign", "malignant"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "malignant" / "broken.png").write_bytes(b"\x89PNG not really")
    proc = cli("train", "--images", tmp_path / "imgs", "--out", tmp_path / "run", *TINY)
    assert_user_error(proc, "broken.png")
    assert not (tmp_path / "run").exists()


def test_unknown_arch(tmp_path, cli):
    proc = cli("train", "--dataset", "synthetic", "--arch", "resnet7", "--out", tmp_path / "run")
    assert_user_error(proc, "--arch", "resnet7", "resnet18")
    assert not (tmp_path / "run").exists()


def test_checkpoint_of_another_architecture(tmp_path, cli):
    run = tmp_path / "run"
    proc = cli("train", "--dataset", "synthetic", "--out", run, *TINY)
    assert proc.returncode == 0, proc.stderr
    # resuming with another architecture
    assert_user_error(cli("train", "--out", run, "--resume", "--arch", "resnet18"), "simple-cnn", "resnet18")
    # a checkpoint whose weights belong to another network than its metadata says
    meta = {"arch": "lenet5", "model_options": {}, "in_channels": 1, "num_classes": 2, "input_size": [28, 28],
            "classes": ["a", "b"], "task": "binary-class", "mean": [0.5], "std": [0.2], "config": {}}
    save_checkpoint(tmp_path / "other.safetensors", build_model("resnet18", 1, 2, (28, 28)), meta)
    proc = cli("predict", tmp_path / "other.safetensors", tmp_path)
    assert_user_error(proc, "other.safetensors", "does not fit --arch lenet5")


def test_existing_run_is_not_overwritten(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", "--dataset", "synthetic", "--out", run, *TINY).returncode == 0
    before = (run / "metrics.json").read_text()
    assert_user_error(cli("train", "--dataset", "synthetic", "--out", run, *TINY), "already holds a run")
    assert (run / "metrics.json").read_text() == before


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
    from medconv.config import TrainConfig
    from medconv.errors import TrainingDiverged
    from medconv.training.checkpoint import read_checkpoint
    from medconv.classify.train import train

    run = tmp_path / "run"
    # lr 1e-3 in epoch 1, then x1e33 from epoch 2 on: the loss explodes in epoch 2
    cfg = TrainConfig(dataset="synthetic", arch="simple-cnn", model_options={"widths": [4], "hidden": [8]},
                      epochs=3, batch_size=64, optimizer="sgd", schedule="step", milestones=[0.3], gamma=1e33)
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(cfg, run)
    tensors, meta = read_checkpoint(run / "checkpoints" / "last.safetensors")
    assert meta["epoch"] == 1
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))
    assert not (run / "metrics.json").exists()


def test_bad_mlp_and_pretraining_options(tmp_path, cli):
    assert_user_error(cli("train", "--dataset", "synthetic", "--arch", "mlp", "--hidden", "500,abc",
                              "--out", tmp_path / "a"), "hidden")
    assert_user_error(cli("train", "--dataset", "synthetic", "--arch", "mlp", "--activation", "relu",
                              "--pretrain", "rbm", "--out", tmp_path / "b"), "--activation sigmoid")
    assert_user_error(cli("train", "--dataset", "synthetic", "--arch", "resnet18", "--pretrain", "ae",
                              "--out", tmp_path / "c"), "--arch mlp")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_a_run_trained_with_score_test_off_has_no_test_figure(tmp_path):
    from medconv.classify.train import train
    from medconv.config import TrainConfig

    cfg = TrainConfig(dataset="synthetic", arch="simple-cnn", model_options={"widths": [4], "hidden": [8]},
                      epochs=1, batch_size=64)
    result = train(cfg, tmp_path / "run", score_test=False)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "val" in result and "test" not in result and "test" not in saved and "auc" in saved["val"]
