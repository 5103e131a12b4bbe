"""Data fingerprints (issue 21): the same data has the same fingerprint however its path is written, swapped
labels change it, `--resume` refuses a run whose data changed, `evaluate` warns about changed data, and
`evaluate`/`predict` refuse a run that has not finished training unless allowed."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from medconv.config import TrainConfig
from medconv.data.fingerprint import differences, fingerprint
from medconv.errors import UserError
from medconv.training import engine

CLASSES = ("a", "b")


def write_manifest(folder, rows) -> None:
    (folder / "labels.csv").write_text("path,label,split\n" + "".join(f"{p},{c},{s}\n" for p, c, s in rows))


@pytest.fixture
def dataset(tmp_path):
    """A CSV manifest of 16x16 grey images (bright: class b) in tmp_path/data; returns (folder, rows)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data"
    (folder / "img").mkdir(parents=True)
    rows = []
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        for i in range(n):
            label = CLASSES[i % 2]
            image = rng.integers(0, 100, (16, 16)).astype(np.uint8) + (120 if label == "b" else 0)
            Image.fromarray(image).save(folder / "img" / f"{split}{i}.png")
            rows.append((f"img/{split}{i}.png", label, split))
    write_manifest(folder, rows)
    return folder, rows


def swap_labels(folder, rows, split: str) -> None:
    """Swap the labels of the first two images of `split` (one of each class)."""
    i, j = [k for k, r in enumerate(rows) if r[2] == split][:2]
    rows = list(rows)
    rows[i], rows[j] = (rows[i][0], rows[j][1], split), (rows[j][0], rows[i][1], split)
    write_manifest(folder, rows)


def loaded(manifest) -> dict:
    from medconv.data import load_dataset
    return fingerprint(load_dataset(TrainConfig(manifest=str(manifest), size=16))[1])


def tiny(folder, **more) -> TrainConfig:
    return TrainConfig(manifest=str(folder / "labels.csv"), size=16, arch="simple-cnn",
                       model_options={"widths": [4], "hidden": [8]}, epochs=2, batch_size=4, select_metric="acc",
                       threads=1, **more)


def interrupted_run(folder, out, monkeypatch):
    """A run of `tiny` stopped (as if killed) right after epoch 1 of 2."""
    from medconv.classify.train import train
    original = engine.write_history

    def write(path, history, fields):
        original(path, history, fields)
        raise KeyboardInterrupt
    monkeypatch.setattr(engine, "write_history", write)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(folder), out, console=Console(quiet=True))
    monkeypatch.setattr(engine, "write_history", original)
    assert json.loads((out / "checkpoints" / "last.json").read_text())["epoch"] == 1
    assert not (out / "metrics.json").exists()


def test_the_same_data_through_relative_and_absolute_paths_has_one_fingerprint(dataset, tmp_path, monkeypatch):
    folder, rows = dataset
    absolute = loaded(folder / "labels.csv")
    monkeypatch.chdir(tmp_path)
    relative = loaded("data/labels.csv")
    assert relative == absolute and set(absolute) == {"train", "val", "test"}
    assert differences(absolute, relative) == []
    swap_labels(folder, rows, "train")
    swapped = loaded("data/labels.csv")
    assert swapped["train"]["images"] == absolute["train"]["images"]
    assert swapped["train"]["labels"] != absolute["train"]["labels"]
    assert differences(absolute, swapped) == ["train labels differ"]


def test_segmentation_fingerprints_follow_the_masks_and_names():
    from medconv.data.segmentation import SegImage
    rng = np.random.default_rng(1)
    images = [SegImage(f"im{i}", rng.random((1, 12, 12), dtype=np.float32), rng.integers(0, 2, (12, 12)))
              for i in range(3)]
    before = fingerprint({"train": images})
    images[1].mask = 1 - images[1].mask
    assert differences(before, fingerprint({"train": images})) == ["train labels differ"]
    images[1].mask, images[2].name = 1 - images[1].mask, "renamed"
    assert differences(before, fingerprint({"train": images})) == ["train image names differ"]

    class Task:  # a task names the splits it trains and validates on
        splits = {"train": images, "val": images[:1]}
    assert engine.trained_splits(Task()) == Task.splits and engine.trained_splits(object()) == {}


def test_resume_after_the_labels_changed_refuses(dataset, tmp_path, monkeypatch):
    from medconv.classify.train import train
    folder, rows = dataset
    out = tmp_path / "run"
    interrupted_run(folder, out, monkeypatch)
    stamp = (out / "checkpoints" / "last.safetensors").stat().st_mtime_ns
    swap_labels(folder, rows, "train")
    with pytest.raises(UserError, match=r"data changed since this run started \(train labels differ\).*another --out"):
        train(TrainConfig(), out, resume=True, console=Console(quiet=True))
    assert (out / "checkpoints" / "last.safetensors").stat().st_mtime_ns == stamp  # refused before training
    write_manifest(folder, rows)  # the data as it was: the run resumes and finishes
    assert train(TrainConfig(), out, resume=True, console=Console(quiet=True))["epochs"] == 2
    scored = json.loads((out / "data.json").read_text())  # every split, from the final evaluation's ImageSets
    trained = json.loads((out / "checkpoints" / "last.json").read_text())["data"]  # the training tensors
    assert set(scored) == {"train", "val", "test"} and set(trained) == {"train", "val"}
    assert all(trained[s] == scored[s] for s in trained)  # the two hash alike


def test_an_unfinished_run_is_refused_unless_allowed_and_changed_data_is_warned_about(dataset, tmp_path,
                                                                                       monkeypatch, capsys):
    from medconv.classify.evaluate import evaluate
    from medconv.classify.predict import predict_files
    from medconv.classify.train import train
    folder, rows = dataset
    out = tmp_path / "run"
    interrupted_run(folder, out, monkeypatch)
    words = r"has not finished training \(epoch 1 of 2\): --resume it, or pass --allow-unfinished"
    with pytest.raises(UserError, match=words):
        evaluate(out, "val")
    image = folder / "img" / "test0.png"
    with pytest.raises(UserError, match=words):
        predict_files(out, [str(image)])
    assert evaluate(out, "val", allow_unfinished=True)["n"] == 4
    assert len(predict_files(out, [str(image)], allow_unfinished=True)) == 1
    assert "warning" not in capsys.readouterr().err  # the data the run trained on

    train(TrainConfig(), out, resume=True, console=Console(quiet=True))
    assert evaluate(out, "test")["n"] == 4  # finished: no flag needed
    assert "warning" not in capsys.readouterr().err
    swap_labels(folder, rows, "test")
    evaluate(out, "test")
    err = capsys.readouterr().err
    assert "warning: the data changed" in err and "test labels differ" in err
    evaluate(out, "val")
    assert "warning" not in capsys.readouterr().err  # val is as it was
