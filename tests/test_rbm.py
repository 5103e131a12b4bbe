"""RBMs against scikit-learn's BernoulliRBM on binarised PneumoniaMNIST (pixel >= 128 -> 1)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.neural_network import BernoulliRBM as SklearnRBM

from medconv.errors import UserError
from medconv.models.rbm import (
    BernoulliRBM,
    GaussianBernoulliRBM,
    mean_pseudo_likelihood,
)

# sklearn's batch_size 10; its learning rate 0.1 makes PCD on these images swing by 15% between
# seeds, 0.01 gives the same PL within 0.5% for every seed, so the 2% comparison means something.
SETTINGS = {"n_components": 64, "learning_rate": 0.01, "batch_size": 10, "n_iter": 5}


def binarise(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 784) float64 of 0/1: a fixed threshold at 128 (half of the 8-bit range)."""
    return (images.reshape(len(images), -1) >= 128).astype(np.float64)


@pytest.fixture(scope="module")
def pneumonia(data_root):
    data = np.load(data_root / "medmnist" / "pneumoniamnist.npz")
    return {"train": binarise(data["train_images"][:2000]), "val": binarise(data["val_images"][:500]),
            "raw": data["train_images"][:1000].reshape(1000, -1).astype(np.float64)}


@pytest.fixture(scope="module")
def trained(pneumonia):
    """(ours, sklearn's), both PCD-1 with the same settings and seed on 2,000 images for 5 epochs."""
    X = pneumonia["train"]
    return BernoulliRBM(**SETTINGS, random_state=0).fit(X), SklearnRBM(**SETTINGS, random_state=0).fit(X)


def as_sklearn(rbm: BernoulliRBM, random_state: int) -> SklearnRBM:
    sk = SklearnRBM(n_components=rbm.n_components, learning_rate=rbm.learning_rate, batch_size=rbm.batch_size,
                    random_state=random_state)
    sk.components_ = rbm.components_.astype(np.float64)
    sk.intercept_hidden_ = rbm.intercept_hidden_.astype(np.float64)
    sk.intercept_visible_ = rbm.intercept_visible_.astype(np.float64)
    sk.n_features_in_ = rbm.n_features_in_
    return sk


def test_score_samples_and_free_energy_equal_sklearn(trained, pneumonia):
    ours, _ = trained
    X = pneumonia["val"]
    sk = as_sklearn(ours, random_state=7)
    ours.set_params(random_state=7)  # the same seed draws the same flipped units as scikit-learn
    try:
        np.testing.assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=1e-5, atol=1e-5)
        flips = np.random.RandomState(7).randint(0, X.shape[1], len(X))
        np.testing.assert_allclose(ours.score_samples(X, flip=flips), sk.score_samples(X), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ours.free_energy(X), sk._free_energy(X), rtol=1e-5, atol=1e-5)
    finally:
        ours.set_params(random_state=0)


class Replay:
    """Stands in for scikit-learn's RandomState: hands out given uniform draws in order."""

    def __init__(self, draws: list[np.ndarray]):
        self.draws = iter(draws)

    def uniform(self, size):
        u = next(self.draws)
        assert u.shape == size
        return u


def test_pcd_update_is_sklearns(trained, pneumonia):
    """Same state, same uniform draws: 5 of our PCD-1 updates equal 5 of scikit-learn's `_fit`."""
    ours = clone(trained[0]).fit(pneumonia["train"][:200])  # a fresh copy, a little trained
    sk = as_sklearn(ours, random_state=0)
    sk.h_samples_ = ours._chain.double().numpy().copy()
    replayed = torch.Generator().set_state(ours._rng.get_state())
    batches = pneumonia["train"][200:250].reshape(5, 10, -1)
    draws = [torch.rand(shape, generator=replayed).double().numpy()
             for _ in batches for shape in ((10, 784), (10, 64))]  # our order: visible, then hidden
    replay = Replay(draws)
    for batch in batches:
        ours.partial_fit(batch)
        sk._fit(batch, replay)
    np.testing.assert_allclose(ours.components_, sk.components_, atol=1e-5)
    np.testing.assert_allclose(ours.intercept_hidden_, sk.intercept_hidden_, atol=1e-5)
    np.testing.assert_allclose(ours.intercept_visible_, sk.intercept_visible_, atol=1e-5)
    np.testing.assert_array_equal(ours._chain.numpy(), sk.h_samples_)


def test_pcd_reaches_sklearn_pseudo_likelihood(trained, pneumonia):
    ours, sk = trained
    X = pneumonia["val"]
    untrained = mean_pseudo_likelihood(BernoulliRBM(**{**SETTINGS, "n_iter": 0}, random_state=0).fit(pneumonia["train"]), X)
    pl_ours, pl_sk = mean_pseudo_likelihood(ours, X), mean_pseudo_likelihood(sk, X)
    print(f"mean pseudo-likelihood on 500 validation images: ours {pl_ours:.2f}, sklearn {pl_sk:.2f}, "
          f"untrained {untrained:.2f}")
    assert abs(pl_ours - pl_sk) <= 0.02 * abs(pl_sk)
    assert pl_ours > untrained + 50 and pl_sk > untrained + 50


def test_training_lowers_free_energy_and_reconstruction_error(trained, pneumonia):
    ours, _ = trained
    X = pneumonia["train"]
    start = BernoulliRBM(**{**SETTINGS, "n_iter": 0}, random_state=0).fit(X)
    assert ours.free_energy(X).mean() < start.free_energy(X).mean() - 100
    assert ours.reconstruction_error(X) < 0.8 * start.reconstruction_error(X)
    assert [row["epoch"] for row in ours.history_] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(row["pseudo_likelihood"]) for row in ours.history_)
    assert ours.history_[-1]["reconstruction_error"] < start.reconstruction_error(X)


def test_transform_gibbs_and_attributes(trained, pneumonia):
    ours, _ = trained
    X = pneumonia["val"][:50]
    H = ours.transform(X)
    assert H.shape == (50, 64) and H.dtype == np.float32 and 0 <= H.min() and H.max() <= 1
    V = ours.gibbs(X)
    assert V.shape == X.shape and set(np.unique(V)) <= {0.0, 1.0}
    assert ours.components_.shape == (64, 784)
    assert ours.intercept_hidden_.shape == (64,) and ours.intercept_visible_.shape == (784,)


def test_cd_k_momentum_weight_decay_and_partial_fit(pneumonia):
    X = pneumonia["train"][:500]
    start = BernoulliRBM(32, n_iter=0, random_state=1).fit(X).reconstruction_error(X)
    rbm = BernoulliRBM(32, persistent=False, k=2, momentum=0.5, weight_decay=1e-4, batch_size=50, n_iter=3,
                       random_state=1).fit(X)
    assert rbm.reconstruction_error(X) < 0.9 * start
    before = rbm.components_.copy()
    rbm.partial_fit(X[:50])
    assert rbm.components_.shape == before.shape and not np.allclose(rbm.components_, before)


def test_bad_input_is_a_user_error(pneumonia):
    raw = pneumonia["raw"][:20]
    with pytest.raises(UserError, match=r"\[0, 1\]") as info:
        BernoulliRBM(8, n_iter=1).fit(raw)
    assert "\n" not in str(info.value) and "found values from 0 to" in str(info.value)
    nan = pneumonia["train"][:20].copy()
    nan[3, 5] = np.nan
    with pytest.raises(UserError, match="NaN"):
        BernoulliRBM(8, n_iter=1).fit(nan)
    with pytest.raises(UserError, match="2-D"):
        BernoulliRBM(8, n_iter=1).fit(pneumonia["train"][:20].reshape(20, 28, 28))
    fitted = BernoulliRBM(8, n_iter=1).fit(pneumonia["train"][:20])
    with pytest.raises(UserError, match="784"):
        fitted.transform(np.zeros((2, 10)))


def test_gaussian_rbm_fits_standardised_images(pneumonia):
    raw = pneumonia["raw"]
    X = (raw - raw.mean(0)) / (raw.std(0) + 1e-8)
    params = {"n_components": 64, "learning_rate": 0.001, "batch_size": 100, "n_iter": 10, "random_state": 0}
    start = GaussianBernoulliRBM(**{**params, "n_iter": 0}).fit(X).reconstruction_error(X)
    rbm = GaussianBernoulliRBM(**params).fit(X)
    assert rbm.reconstruction_error(X) < 0.85 * start
    assert rbm.history_[-1]["reconstruction_error"] < rbm.history_[0]["reconstruction_error"]
    assert rbm.transform(X).shape == (1000, 64) and np.isfinite(rbm.free_energy(X)).all()
    assert not hasattr(rbm, "score_samples")  # pseudo-likelihood is defined for binary units only
