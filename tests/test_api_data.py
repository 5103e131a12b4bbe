"""Data given in Python (issue 22, item 6): medconv.train(cfg, out, data=...) takes arrays, tensors or a torch
Dataset; medconv.predict takes arrays and returns probabilities; medconv.evaluate takes the data again."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import medconv
from medconv.data.synthetic import load_synthetic
from medconv.errors import UserError

OPTIONS = dict(arch="simple-cnn", model_options={"widths": [4], "hidden": [8]}, epochs=2, batch_size=32,
               deterministic=True, seed=3)


class Items(torch.utils.data.Dataset):
    """A user's own Dataset: (H, W, C) uint8 numpy images and int labels, no targets attribute."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels_ = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels_[i])


@pytest.fixture(scope="module")
def arrays():
    """Synthetic lesions as channels-last uint8 numpy arrays: {split: (images (N, 28, 28, 1), labels (N,))}."""
    _, sets = load_synthetic()
    return {k: (s.images.permute(0, 2, 3, 1).numpy()[:160], s.labels[:160, 0].numpy()) for k, s in sets.items()}


@pytest.fixture(scope="module")
def array_run(arrays, tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "arrays"
    result = medconv.train(medconv.TrainConfig(**OPTIONS), out, data=arrays)
    return out, result


def test_arrays_train_and_predict_returns_the_probabilities_evaluate_wrote(array_run, arrays):
    out, result = array_run
    assert result["dataset"] == "python" and set(result) >= {"val", "test"}
    probs = medconv.predict(out, arrays["test"][0])
    assert probs.shape == (len(arrays["test"][0]), 2)
    with open(out / "predictions_test.csv") as fh:
        rows = list(csv.DictReader(fh))
    written = np.array([[float(r[k]) for k in rows[0] if k.startswith("prob_")] for r in rows])
    np.testing.assert_allclose(probs, written, atol=1e-5)
    floats = medconv.predict(out, torch.from_numpy(arrays["test"][0]).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(floats, probs, atol=1e-6)  # (N, C, H, W) floats in [0, 1]: the same input


def test_a_torch_dataset_trains_exactly_as_the_arrays_read_by_worker_processes(array_run, arrays, tmp_path):
    data = {k: Items(*v) for k, v in arrays.items()}
    out = tmp_path / "dataset"
    medconv.train(medconv.TrainConfig(**OPTIONS, workers=1), out, data=data)
    a = load_file(array_run[0] / "checkpoints" / "last.safetensors")
    b = load_file(out / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_needs_the_data_again(array_run, arrays):
    out, result = array_run
    with pytest.raises(UserError, match="data given in Python"):
        medconv.evaluate(out, split="test")
    again = medconv.evaluate(out, split="test", data={"test": arrays["test"]})
    assert again["auc"] == pytest.approx(result["test"]["auc"])


def test_bad_arrays_are_refused_in_one_line(array_run, arrays, tmp_path):
    x, y = arrays["train"]
    for data, needle in (({"train": (x.astype(np.float32), y), "val": arrays["val"]}, "must lie in [0, 1]"),
                         ({"train": (x, y[:-1]), "val": arrays["val"]}, "labels for"),
                         ({"train": (x, y)}, "train and val"),
                         ({"train": (x[..., 0][:, :, :, None, None], y), "val": arrays["val"]}, "expected")):
        with pytest.raises(UserError, match=needle.replace("[", r"\[").replace("]", r"\]")) as err:
            medconv.train(medconv.TrainConfig(**OPTIONS), tmp_path / "bad", data=data)
        assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="must lie in"):
        medconv.predict(array_run[0], x.astype(np.float32))


def test_a_resized_run_predicts_and_evaluates_given_arrays_as_it_trained(arrays, tmp_path):
    out = tmp_path / "resized"
    result = medconv.train(medconv.TrainConfig(**{**OPTIONS, "epochs": 1}, resize=40), out, data=arrays)
    with open(out / "predictions_test.csv") as fh:
        rows = list(csv.DictReader(fh))
    written = np.array([[float(r[k]) for k in rows[0] if k.startswith("prob_")] for r in rows])
    np.testing.assert_allclose(medconv.predict(out, arrays["test"][0]), written, atol=1e-5)
    again = medconv.evaluate(out, split="test", data={"test": arrays["test"]})
    assert again["auc"] == pytest.approx(result["test"]["auc"])


def test_signed_integers_and_datasets_that_do_not_fit(arrays, tmp_path):
    from medconv.data.given import as_images

    ct = np.array([[[-32768, 0], [1000, 32767]]], np.int16)
    np.testing.assert_allclose(as_images(ct)[0, 0].numpy(), (ct[0].astype(float) + 32768) / 65535, atol=1e-6)
    x, y = arrays["train"]
    ragged = Items(np.array([x[0]] + [x[1][:20]] * 3, dtype=object), y[:4])
    for data, options, needle in (({**{k: Items(*v) for k, v in arrays.items()}}, {"channels": 3}, "channels 3"),
                                  ({"train": (x, np.array(["a"] * len(y))), "val": arrays["val"]}, {}, "class indices"),
                                  ({"train": ragged, "val": arrays["val"]}, {}, "share one shape")):
        with pytest.raises(UserError, match=needle) as err:
            medconv.train(medconv.TrainConfig(**{**OPTIONS, **options}), tmp_path / "bad", data=data)
        assert "\n" not in str(err.value)
