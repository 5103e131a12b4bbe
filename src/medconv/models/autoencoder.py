"""Autoencoders for layer-wise pretraining, and `fit_stack`, which stacks any such layer (RBMs too).

    ae = Autoencoder(n_components=256, noise=0.3, random_state=0).fit(X)    # X: (N, D) in [0, 1]
    codes = ae.transform(X)                                                 # (N, 256)
    layers = fit_stack(lambda n: BernoulliRBM(n, random_state=0), X, [256, 64])

h = sigmoid(W x + b), x_hat = sigmoid(W' h + c) with W' = W^T when tied; the loss is the squared
reconstruction error 1/2 |x_hat - x|^2 per sample (summed over features, averaged over the
minibatch), minimised by SGD with momentum through torch autograd. With noise > 0 the layer is a
denoising autoencoder: that fraction of the inputs is set to 0 (masking noise) before encoding, and
the clean input is the target.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..errors import UserError
from .layer import TorchLayer, as_numpy


class AutoencoderNet(nn.Module):
    """Sigmoid encoder and decoder for inputs (N, n_features); one weight matrix when tied."""

    def __init__(self, n_features: int, n_components: int, tied: bool, generator: torch.Generator,
                 device: torch.device):
        super().__init__()
        bound = 4 * (6 / (n_features + n_components)) ** 0.5  # Glorot's uniform range for sigmoid units

        def uniform(*shape):
            return nn.Parameter(torch.rand(shape, generator=generator, device=device).mul_(2 * bound).sub_(bound))

        self.weight = uniform(n_components, n_features)
        self.decoder_weight = None if tied else uniform(n_features, n_components)
        self.hidden_bias = nn.Parameter(torch.zeros(n_components, device=device))
        self.visible_bias = nn.Parameter(torch.zeros(n_features, device=device))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, n_features) -> codes (N, n_components)."""
        return torch.sigmoid(nn.functional.linear(x, self.weight, self.hidden_bias))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """(N, n_components) -> reconstruction (N, n_features)."""
        w = self.weight.t() if self.decoder_weight is None else self.decoder_weight
        return torch.sigmoid(nn.functional.linear(h, w, self.visible_bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class Autoencoder(TorchLayer):
    """One (denoising) autoencoder layer, scikit-learn style; inputs are values in [0, 1].

    Parameters: n_components (code width), tied (decoder uses W^T: one weight matrix), noise (fraction
    of inputs masked to 0 while training), learning_rate, batch_size, n_iter (epochs), momentum,
    weight_decay (L2 on the weights), random_state, device, verbose.
    Attributes: module_ (the AutoencoderNet), components_ (encoder weights, (n_components, n_features)),
    history_ (per epoch: mean loss and the reconstruction error on a fixed subset).
    """

    def __init__(self, n_components: int = 256, *, tied: bool = True, noise: float = 0.0,
                 learning_rate: float = 0.1, batch_size: int = 100, n_iter: int = 10, momentum: float = 0.9,
                 weight_decay: float = 0.0, random_state=None, device: str = "cpu", verbose: bool = False):
        self._keep_params(locals())

    @property
    def components_(self) -> np.ndarray:
        """Encoder weights (n_components, n_features)."""
        return as_numpy(self.module_.weight)

    def _init_params(self, n_features: int) -> None:
        if not 0.0 <= self.noise < 1.0:
            raise UserError(f"Autoencoder: noise must be a fraction in [0, 1), got {self.noise}")
        self.module_ = AutoencoderNet(n_features, self.n_components, self.tied, self._rng, self._device())
        weights = [p for name, p in self.module_.named_parameters() if name.endswith("weight")]
        biases = [p for name, p in self.module_.named_parameters() if name.endswith("bias")]
        self._optimizer = torch.optim.SGD([{"params": weights, "weight_decay": self.weight_decay},
                                           {"params": biases, "weight_decay": 0.0}],
                                          lr=self.learning_rate, momentum=self.momentum)

    def _epoch(self, X: torch.Tensor) -> None:
        total = torch.zeros((), device=X.device)
        for idx in torch.randperm(len(X), generator=self._rng, device=X.device).split(self.batch_size):
            x = X[idx]
            x_in = x if not self.noise else x * torch.rand(x.shape, generator=self._rng, device=x.device).ge_(self.noise)
            loss = 0.5 * ((self.module_(x_in) - x) ** 2).sum(1).mean()
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._optimizer.step()
            total += loss.detach() * len(x)
        self._epoch_loss = total / len(X)  # read once, after the epoch

    def _monitor(self, v: torch.Tensor) -> dict:
        return {"loss": float(self._epoch_loss), **super()._monitor(v)}

    def _encode(self, v: torch.Tensor) -> torch.Tensor:
        return self.module_.encode(v)

    def _decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.module_.decode(h)


def fit_stack(estimator_factory: Callable[[int], TransformerMixin], X, sizes: Sequence[int]) -> list:
    """Greedy layer-wise training: layer i = estimator_factory(sizes[i]) fitted on layer i-1's codes.

    Works for any estimator with fit / transform (Autoencoder, BernoulliRBM, ...); X is (N, D).
    Returns the fitted layers; the codes of the last one are (N, sizes[-1]).
    """
    layers, codes = [], X
    for size in sizes:
        layer = estimator_factory(size).fit(codes)
        codes = layer.transform(codes)
        layers.append(layer)
    return layers


class StackedAutoencoder(TransformerMixin, BaseEstimator):
    """Autoencoders trained one after another, each on the previous one's codes.

    StackedAutoencoder([256, 64], noise=0.2, random_state=0).fit(X).transform(X) -> (N, 64);
    keyword arguments go to every Autoencoder layer. Attribute: layers_ (the fitted Autoencoders).
    """

    def __init__(self, layer_sizes: Sequence[int] = (256, 64), **layer_params):
        self.layer_sizes = layer_sizes
        self.layer_params = layer_params

    def fit(self, X, y=None):
        self.layers_ = fit_stack(lambda n: Autoencoder(n, **self.layer_params), X, self.layer_sizes)
        return self

    def transform(self, X) -> np.ndarray:
        """Codes of the last layer, (N, layer_sizes[-1])."""
        check_is_fitted(self)
        for layer in self.layers_:
            X = layer.transform(X)
        return X
