"""Training on a taxonomy's leaves and reading the network out at a coarser level, or training on the
coarse level directly (CRCHistoPhenotypes nuclei: epithelial vs non-epithelial)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medconv.config import TrainConfig
from medconv.data import load_dataset
from medconv.errors import UserError
from medconv.classify.train import train

TREE = Path(__file__).resolve().parents[1] / "examples" / "nuclei_taxonomy.yaml"


def nuclei(data_root, **changes) -> TrainConfig:
    base = dict(dataset="crchistophenotypes", data_root=str(data_root), arch="simple-cnn", epochs=1, batch_size=64,
                train_fraction=0.03, model_options={"widths": [8, 16], "hidden": [16]}, threads=1,
                taxonomy=str(TREE))
    return TrainConfig(**{**base, **changes})


def read_csv(path: Path) -> dict:
    """Columns of a predictions CSV: numbers as arrays, paths as a list."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: [r[k] for r in rows] if k == "path" else np.array([float(r[k]) for r in rows]) for k in rows[0]}


@pytest.fixture(scope="module")
def fine_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("levels") / "fine"
    train(nuclei(data_root), out)
    return out


def test_coarse_level_sums_the_fine_probabilities(fine_run, cli):
    result = cli("evaluate", fine_run, "--split", "test", "--level", "coarse", "--json")
    assert result.returncode == 0, result.stderr
    coarse = json.loads(result.stdout)
    assert set(coarse["per_class"]) == {"epithelial", "non-epithelial"} and coarse["level"] == "coarse"
    fine, summed = read_csv(fine_run / "predictions_test.csv"), read_csv(fine_run / "predictions_test_coarse.csv")
    np.testing.assert_allclose(summed["prob_epithelial"], fine["prob_epithelial"], atol=2e-6)
    np.testing.assert_allclose(summed["prob_non-epithelial"], fine["prob_fibroblast"] + fine["prob_inflammatory"]
                               + fine["prob_others"], atol=4e-6)
    np.testing.assert_array_equal(summed["label"], (fine["label"] != 0).astype(float))  # epithelial is class 0
    assert summed["path"] == fine["path"]
    assert coarse["n"] == len(fine["path"])


def test_training_on_the_coarse_level(tmp_path, data_root):
    info, sets = load_dataset(nuclei(data_root, train_level="coarse"))
    assert info.classes == ["epithelial", "non-epithelial"] and info.task == "binary-class"
    fine_info, fine_sets = load_dataset(nuclei(data_root))
    np.testing.assert_array_equal(sets["test"].labels.numpy(), (fine_sets["test"].labels.numpy() > 0).astype(int))
    metrics = train(nuclei(data_root, train_level="coarse"), tmp_path / "coarse")
    assert set(metrics["test"]["per_class"]) == {"epithelial", "non-epithelial"}


def test_a_tree_that_does_not_match_the_classes_is_one_clear_error(tmp_path, data_root):
    tree = tmp_path / "tree.yaml"
    tree.write_text("all:\n  epithelial:\n  stroma: [fibroblast, lymphocyte]\n")
    with pytest.raises(UserError, match="not in the dataset: lymphocyte; not in the tree: inflammatory, others"):
        load_dataset(nuclei(data_root, taxonomy=str(tree)))


def test_level_without_taxonomy_is_refused(tmp_path, data_root):
    with pytest.raises(UserError, match="--train-level needs --taxonomy"):
        load_dataset(nuclei(data_root, taxonomy=None, train_level="coarse"))


def test_predict_on_a_nucleus_patch_file_equals_evaluate(fine_run, tmp_path, data_root):
    from PIL import Image

    from medconv.classify.predict import predict_files
    _, sets = load_dataset(nuclei(data_root))
    patch = tmp_path / "patch.png"
    Image.fromarray(sets["test"].images[0].permute(1, 2, 0).numpy()).save(patch)  # a 27 x 27 RGB patch
    row = predict_files(fine_run, [str(patch)])[0]
    evaluated = read_csv(fine_run / "predictions_test.csv")
    for name in ("epithelial", "fibroblast", "inflammatory", "others"):
        assert abs(row[f"prob_{name}"] - evaluated[f"prob_{name}"][0]) < 1e-5
