"""Autoencoders and layer-wise stacking on PneumoniaMNIST images scaled to [0, 1]."""
from __future__ import annotations

import numpy as np
import pytest

from medconv.errors import UserError
from medconv.models.autoencoder import Autoencoder, StackedAutoencoder, fit_stack
from medconv.models.rbm import BernoulliRBM


@pytest.fixture(scope="module")
def images(data_root):
    data = np.load(data_root / "medmnist" / "pneumoniamnist.npz")
    return data["train_images"][:1000].reshape(1000, -1) / 255.0  # (1000, 784) in [0, 1]


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def test_reconstruction_error_drops(images):
    start = Autoencoder(64, n_iter=0, random_state=0).fit(images).reconstruction_error(images)
    ae = Autoencoder(64, n_iter=3, random_state=0).fit(images)
    assert ae.reconstruction_error(images) < 0.5 * start
    assert ae.history_[-1]["loss"] < ae.history_[0]["loss"]
    assert ae.transform(images).shape == (1000, 64)


def test_tied_weights_are_one_parameter(images):
    ae = Autoencoder(32, n_iter=1, random_state=0).fit(images)
    assert sum(p.ndim == 2 for p in ae.module_.parameters()) == 1
    W = ae.components_.astype(np.float64)
    b = ae.module_.hidden_bias.detach().numpy().astype(np.float64)
    c = ae.module_.visible_bias.detach().numpy().astype(np.float64)
    expected = sigmoid(sigmoid(images @ W.T + b) @ W + c)  # decoder = transposed encoder
    np.testing.assert_allclose(ae.reconstruct(images), expected, atol=1e-5)
    untied = Autoencoder(32, tied=False, n_iter=1, random_state=0).fit(images)
    assert sum(p.ndim == 2 for p in untied.module_.parameters()) == 2


def test_denoising_autoencoder_learns(images):
    start = Autoencoder(64, noise=0.3, n_iter=0, random_state=0).fit(images).reconstruction_error(images)
    ae = Autoencoder(64, noise=0.3, n_iter=3, random_state=0).fit(images)
    clean = Autoencoder(64, n_iter=3, random_state=0).fit(images)
    assert ae.reconstruction_error(images) < 0.5 * start
    assert ae.history_[0]["loss"] != clean.history_[0]["loss"]  # the masking noise is really applied


def test_stacked_autoencoder_code_widths(images):
    stack = StackedAutoencoder([128, 32], n_iter=2, random_state=0).fit(images)
    assert [layer.n_components for layer in stack.layers_] == [128, 32]
    assert stack.layers_[0].transform(images).shape == (1000, 128)
    assert stack.transform(images).shape == (1000, 32)


def test_fit_stack_stacks_rbms(images):
    binary = (images >= 0.5).astype(np.float32)
    layers = fit_stack(lambda n: BernoulliRBM(n, n_iter=2, random_state=0), binary, [128, 32])
    assert all(isinstance(layer, BernoulliRBM) for layer in layers)
    codes = layers[0].transform(binary)
    assert codes.shape == (1000, 128) and layers[1].n_features_in_ == 128
    assert layers[1].transform(codes).shape == (1000, 32)


def test_bad_input_is_a_user_error(images):
    with pytest.raises(UserError, match="noise"):
        Autoencoder(8, noise=1.5, n_iter=1).fit(images)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        Autoencoder(8, n_iter=1).fit(images * 255)
