"""A numpy multilayer perceptron that writes backpropagation out as the delta rule, for teaching.

Notation (layer l = 1..L, a_0 = x):  z_l = a_{l-1} W_l + b_l,  a_l = f(z_l),  W_l of shape (n_{l-1}, n_l).

Output layers and their losses, for a batch of N rows (sums run over the output units k):

- "linear"  + squared error          L = (1/N) sum_n 0.5 sum_k (y_hat - y)^2
- "sigmoid" + binary cross-entropy   L = -(1/N) sum_n sum_k [y log y_hat + (1 - y) log(1 - y_hat)]
- "softmax" + categorical CE         L = -(1/N) sum_n sum_k y log y_hat   (y one-hot; integer labels accepted)

Each pairing is the canonical one, so the output delta dL/dz_L is (y_hat - y) / N in all three cases;
hidden deltas follow delta_l = (delta_{l+1} W_{l+1}^T) * f'(z_l), with f' written from the activation
(sigmoid a(1-a) <= 0.25, tanh 1-a^2, relu [a > 0]), and grad W_l = a_{l-1}^T delta_l. The factor f' <= 0.25
at every sigmoid layer is what makes gradients vanish towards the input (`gradient_norms`).

Initialisation: Glorot uniform (Glorot & Bengio 2010), W_l ~ U(-r, r) with r = sqrt(6 / (n_{l-1} + n_l)),
biases zero; float64 throughout.
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import torch
from scipy.special import expit, log_expit, log_softmax, softmax

from ..errors import UserError
from .mlp import MLP, check_activation

OUTPUTS = ("linear", "sigmoid", "softmax")

_HIDDEN = {  # name: (f(z), f'(z) written from a = f(z))
    "sigmoid": (expit, lambda a: a * (1.0 - a)),
    "tanh": (np.tanh, lambda a: 1.0 - a * a),
    "relu": (lambda z: np.maximum(z, 0.0), lambda a: (a > 0).astype(a.dtype)),
}
_OUTPUT = {"linear": lambda z: z, "sigmoid": expit, "softmax": lambda z: softmax(z, axis=1)}


class NumpyMLP:
    """Fully connected network `sizes = [n_in, *hidden, n_out]` trained by explicit backpropagation.

    `weights[l]` (sizes[l], sizes[l+1]) and `biases[l]` (sizes[l+1],), input side first; the gradients of
    the last `backward` are kept in `weight_grads` / `bias_grads` for `step` and `gradient_norms`.
    """

    def __init__(self, sizes: Sequence[int], hidden_activation: str = "sigmoid", output: str = "softmax",
                 random_state: int | np.random.Generator | None = None):
        if len(sizes) < 2:
            raise UserError(f"NumpyMLP: sizes {list(sizes)} need at least an input and an output width")
        if output not in OUTPUTS:
            raise UserError(f"NumpyMLP: output '{output}' unknown: expected one of {', '.join(OUTPUTS)}")
        self.sizes = [int(s) for s in sizes]
        self.hidden_activation = check_activation(hidden_activation)
        self.output = output
        self.rng = np.random.default_rng(random_state)
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        for n_in, n_out in pairwise(self.sizes):
            r = np.sqrt(6.0 / (n_in + n_out))
            self.weights.append(self.rng.uniform(-r, r, size=(n_in, n_out)))
            self.biases.append(np.zeros(n_out))
        self.weight_grads: list[np.ndarray] = [np.zeros_like(w) for w in self.weights]
        self.bias_grads: list[np.ndarray] = [np.zeros_like(b) for b in self.biases]

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Activations [a_0 = x (N, n_in), a_1, ..., a_L = y_hat (N, n_out)]."""
        f = _HIDDEN[self.hidden_activation][0]
        activations = [np.asarray(x, dtype=np.float64)]
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = activations[-1] @ w + b
            activations.append(_OUTPUT[self.output](z) if l == len(self.weights) - 1 else f(z))
        return activations

    def predict(self, x: np.ndarray) -> np.ndarray:
        """y_hat (N, n_out): values (linear), per-unit probabilities (sigmoid) or class probabilities (softmax)."""
        return self.forward(x)[-1]

    def targets(self, y: np.ndarray) -> np.ndarray:
        """y as (N, n_out) float64: integer labels (N,) become one-hot for softmax, (N,) becomes (N, 1) otherwise."""
        y = np.asarray(y)
        if y.ndim == 1 and self.output == "softmax":
            return np.eye(self.sizes[-1])[y.astype(int)]
        return y.reshape(len(y), -1).astype(np.float64)

    def loss(self, activations: list[np.ndarray], y: np.ndarray) -> float:
        """The loss of the output pairing (module docstring), from `forward`'s activations; computed from
        the output logits z_L for numerical stability."""
        y = self.targets(y)
        z = activations[-2] @ self.weights[-1] + self.biases[-1]
        if self.output == "linear":
            per_row = 0.5 * ((z - y) ** 2).sum(axis=1)
        elif self.output == "sigmoid":
            per_row = -(y * log_expit(z) + (1.0 - y) * log_expit(-z)).sum(axis=1)
        else:
            per_row = -(y * log_softmax(z, axis=1)).sum(axis=1)
        return float(per_row.mean())

    def backward(self, activations: list[np.ndarray], y: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Gradients of `loss` w.r.t. every weight (n_{l-1}, n_l) and bias (n_l,), input side first."""
        fprime = _HIDDEN[self.hidden_activation][1]
        y = self.targets(y)
        delta = (activations[-1] - y) / len(y)  # dL/dz_L: (y_hat - y) / N for all three pairings
        weight_grads, bias_grads = [], []
        for l in range(len(self.weights) - 1, -1, -1):
            weight_grads.append(activations[l].T @ delta)
            bias_grads.append(delta.sum(axis=0))
            if l > 0:
                delta = (delta @ self.weights[l].T) * fprime(activations[l])
        self.weight_grads, self.bias_grads = weight_grads[::-1], bias_grads[::-1]
        return self.weight_grads, self.bias_grads

    def gradient_norms(self) -> list[float]:
        """Frobenius norm of each weight gradient of the last `backward`, input side first."""
        return [float(np.linalg.norm(g)) for g in self.weight_grads]

    def step(self, lr: float) -> None:
        """One gradient-descent step with the gradients of the last `backward`."""
        for w, b, gw, gb in zip(self.weights, self.biases, self.weight_grads, self.bias_grads):
            w -= lr * gw
            b -= lr * gb

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int = 100, lr: float = 0.1,
            batch_size: int | None = None) -> list[float]:
        """Minibatch gradient descent (rows shuffled each epoch; `batch_size=None`: full batch).

        x (N, n_in), y as `targets` accepts; returns the loss on all of (x, y) after each epoch.
        """
        x = np.asarray(x, dtype=np.float64)
        y = self.targets(y)
        batch_size = batch_size or len(x)
        history = []
        for _ in range(epochs):
            order = self.rng.permutation(len(x))
            for start in range(0, len(x), batch_size):
                rows = order[start:start + batch_size]
                self.backward(self.forward(x[rows]), y[rows])
                self.step(lr)
            history.append(self.loss(self.forward(x), y))
        return history

    def to_torch(self) -> MLP:
        """The same network as a torch `MLP` (float64, logits out: apply the output function to compare)."""
        model = MLP(self.sizes[0], self.sizes[-1], self.sizes[1:-1], self.hidden_activation).double()
        with torch.no_grad():
            for layer, w, b in zip([*model.hidden_layers, model.output_layer], self.weights, self.biases):
                layer.weight.copy_(torch.from_numpy(w.T))
                layer.bias.copy_(torch.from_numpy(b))
        return model

    @classmethod
    def from_torch(cls, model: MLP, output: str = "softmax") -> NumpyMLP:
        """A NumpyMLP holding `model`'s weights (as float64), with the given output pairing."""
        layers = [*model.hidden_layers, model.output_layer]
        sizes = [layers[0].in_features] + [layer.out_features for layer in layers]
        net = cls(sizes, model.activation, output)
        net.weights = [layer.weight.detach().double().numpy().T.copy() for layer in layers]
        net.biases = [layer.bias.detach().double().numpy().copy() for layer in layers]
        return net
