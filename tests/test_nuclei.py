"""CRCHistoPhenotypes nucleus patches: counts, image-level splits, exact crops, mirror padding."""
from __future__ import annotations

import csv
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from medconv.config import TrainConfig
from medconv.data import load_dataset
from medconv.data.nuclei import CLASSES, load_nuclei
from medconv.errors import UserError


@pytest.fixture(scope="module")
def folder(data_root):
    return data_root / "crchistophenotypes"


@pytest.fixture(scope="module")
def loaded(data_root):
    return load_nuclei(data_root)


@pytest.fixture(scope="module")
def rows(folder):
    with (folder / "classification_centroids.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def image_of(path: str) -> str:
    return path.split(".png@")[0]


def split_of(s) -> set[str]:
    return {image_of(p) for p in s.paths}


def find(s, image: str, x: str, y: str) -> int:
    return s.paths.index(f"{image}.png@{x},{y}")


def pixels(folder, image: str) -> np.ndarray:
    return np.asarray(Image.open(folder / "images" / f"{image}.png").convert("RGB"))


def test_info_and_shapes(loaded):
    info, sets = loaded
    assert info.task == "multi-class" and info.classes == list(CLASSES)
    assert info.channels == 3 and info.size == (27, 27)
    assert "test = the 10 validation images" in info.notes[0]
    for s in sets.values():
        assert s.images.dtype.is_floating_point is False and tuple(s.images.shape[1:]) == (3, 27, 27)
        assert s.labels.shape == (len(s), 1) and len(s.paths) == len(s)


def test_splits_by_image_and_counts_match_csv(loaded, rows, folder):
    _, sets = loaded
    with (folder / "split.csv").open(newline="") as fh:
        split_csv = {r["image"]: r["split"] for r in csv.DictReader(fh)}
    images = {name: split_of(s) for name, s in sets.items()}
    assert not images["train"] & images["val"] and not images["train"] & images["test"]
    assert not images["val"] & images["test"]
    assert images["test"] == {k for k, v in split_csv.items() if v == "validation"}
    assert len(images["val"]) == 10 and len(images["train"]) == 60
    assert images["train"] | images["val"] == {k for k, v in split_csv.items() if v == "train"}
    for name, s in sets.items():
        wanted = [r for r in rows if r["image"] in images[name]]
        assert len(s) == len(wanted)
        counts = Counter(CLASSES[i] for i in s.labels[:, 0].tolist())
        assert counts == Counter(r["class"] for r in wanted), name
    assert sum(len(s) for s in sets.values()) == len(rows)


def test_val_is_deterministic(data_root, loaded):
    _, again = load_nuclei(data_root)
    assert split_of(again["val"]) == split_of(loaded[1]["val"])
    assert loaded[1]["val"].paths == again["val"].paths


def test_interior_patch_is_exact_crop(loaded, rows, folder):
    _, sets = loaded
    test_images = split_of(sets["test"])
    row = next(r for r in rows if r["image"] in test_images
               and 20 < float(r["x"]) < 480 and 20 < float(r["y"]) < 480 and r["class"] == "fibroblast")
    col, rw = int(np.floor(float(row["x"]) - 0.5)), int(np.floor(float(row["y"]) - 0.5))
    i = find(sets["test"], row["image"], row["x"], row["y"])
    crop = pixels(folder, row["image"])[rw - 13:rw + 14, col - 13:col + 14]
    assert np.array_equal(sets["test"].images[i].permute(1, 2, 0).numpy(), crop)
    assert sets["test"].labels[i, 0].item() == CLASSES.index("fibroblast")


def test_border_patch_is_mirror_padded(loaded, rows, folder):
    _, sets = loaded
    row = next(r for r in rows if float(r["x"]) < 10 and 20 < float(r["y"]) < 480)
    name, s = next((n, s) for n, s in sets.items() if row["image"] in split_of(s))
    col, rw = int(np.floor(float(row["x"]) - 0.5)), int(np.floor(float(row["y"]) - 0.5))
    assert col < 13
    padded = np.pad(pixels(folder, row["image"]), ((13, 13), (13, 13), (0, 0)), mode="reflect")
    expected = padded[rw:rw + 27, col:col + 27]
    got = s.images[find(s, row["image"], row["x"], row["y"])].permute(1, 2, 0).numpy()
    assert np.array_equal(got, expected), name
    # the mirrored column left of the image equals the column the same distance inside
    assert np.array_equal(got[:, 13 - col - 1], got[:, 13 - col + 1])


def test_patch_size_option(data_root):
    info, sets = load_nuclei(data_root, patch=5, val_images=["img1"])
    assert info.size == (5, 5) and tuple(sets["train"].images.shape[1:]) == (3, 5, 5)
    assert split_of(sets["val"]) == {"img1"}


@pytest.mark.parametrize("patch", [26, 3, 0])
def test_bad_patch_is_user_error(data_root, patch):
    with pytest.raises(UserError, match="odd"):
        load_nuclei(data_root, patch=patch)
    with pytest.raises(UserError, match="--patch"):
        TrainConfig(dataset="crchistophenotypes", patch=patch).validate()


def test_missing_folder_is_clear(tmp_path):
    with pytest.raises(UserError) as err:
        load_nuclei(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "crchistophenotypes") in message and "DATA_ROOT/crchistophenotypes" in message
    assert "\n" not in message


def test_missing_csv_is_clear(tmp_path):
    (tmp_path / "crchistophenotypes").mkdir()
    with pytest.raises(UserError, match="split.csv not found"):
        load_nuclei(tmp_path)


def test_load_dataset_dispatch(data_root):
    info, sets = load_dataset(TrainConfig(dataset="crchistophenotypes", data_root=str(data_root), patch=9))
    assert info.name == "crchistophenotypes" and tuple(sets["val"].images.shape[1:]) == (3, 9, 9)


def test_a_short_training_on_nucleus_patches_scores_every_test_nucleus(crc_classifier, loaded, rows):
    out, result = crc_classifier
    _, sets = loaded
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == result["test"]["n"] == len(sets["test"])  # every nucleus of the 10 test images
    assert metrics["val"]["n"] == len(sets["val"])
    test_images = split_of(sets["test"])
    counts = Counter(r["class"] for r in rows if r["image"] in test_images)  # from the CSV
    assert sum(counts.values()) == metrics["test"]["n"]
    test = metrics["test"]
    assert {c: v["support"] for c, v in test["per_class"].items()} == {c: counts[c] for c in CLASSES}
    assert np.array(test["confusion_matrix"]).sum(1).tolist() == [counts[c] for c in CLASSES]  # rows: true class
    # one epoch on 5% of the training patches (646): macro AUC measured 0.76 (val 0.74); chance is 0.5
    assert test["auc"] > 0.68 and metrics["val"]["auc"] > 0.65
    assert test["acc"] == pytest.approx(np.trace(test["confusion_matrix"]) / test["n"])
