"""Restricted Boltzmann machines on torch, trained with CD-k or persistent CD (PCD-k).

    rbm = BernoulliRBM(n_components=256, batch_size=100, n_iter=10, random_state=0).fit(X)  # X: (N, D) in [0, 1]
    H = rbm.transform(X)            # (N, 256) hidden probabilities P(h=1 | v)
    pl = rbm.score_samples(X)       # (N,) pseudo-likelihood, as scikit-learn computes it

Configured like scikit-learn's `BernoulliRBM` (persistent=True, k=1, momentum=0, weight_decay=0) the
update is scikit-learn's: positive phase with hidden probabilities of the data; negative phase with
the persistent chain's visible *sample* and its hidden probabilities; the learning rate multiplies
mean (not summed) statistics; weights start as N(0, 0.01^2), biases and the chain at zero; minibatches
in data order (tests/test_rbm.py replays scikit-learn's `_fit` with our random draws and gets our
weights). One difference: for a short last minibatch scikit-learn divides the chains' summed
statistics by that batch's size, we average them over the chains. momentum > 0 keeps a velocity,
vel = momentum * vel + learning_rate * gradient; weight_decay adds -weight_decay * W to the weight
gradient. Sampling, updates and monitoring run as float32 torch ops on `device`; `free_energy`
and `score_samples` compute in float64 so that they equal scikit-learn's to 1e-5.

`layer.TorchLayer` holds what RBMs and autoencoders share.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import check_random_state

from ..errors import UserError
from .layer import MONITOR_ROWS, TorchLayer, as_numpy  # noqa: F401  (as_numpy: part of this module's API)


def bernoulli(p: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """0/1 samples with probabilities p (float32, p's shape): one uniform draw, compared in place.

    Unlike torch.bernoulli it does not fail on NaN (fit reports divergence after the epoch instead).
    """
    return torch.rand(p.shape, generator=generator, device=p.device).lt_(p)


def _numpy_property(attr: str, doc: str) -> property:
    """An attribute that reads the float32 tensor `attr` as numpy and writes it from any array."""
    def get(self) -> np.ndarray:
        return as_numpy(getattr(self, attr))

    def put(self, value) -> None:
        t = torch.as_tensor(np.asarray(value), dtype=torch.float32, device=self._device()).clone()
        setattr(self, attr, t)
        if t.ndim == 2:  # a weight matrix fixes the input width
            self.n_features_in_ = t.shape[1]
    return property(get, put, doc=doc)


class _RBM(TorchLayer):
    """What Bernoulli-Bernoulli and Gaussian-Bernoulli RBMs share: binary hidden units, CD-k / PCD-k."""

    def __init__(self, n_components: int = 256, *, learning_rate: float = 0.1, batch_size: int = 100,
                 n_iter: int = 10, k: int = 1, persistent: bool = True, momentum: float = 0.0,
                 weight_decay: float = 0.0, random_state=None, device: str = "cpu", verbose: bool = False):
        self._keep_params(locals())

    # visible-unit specifics -------------------------------------------------------------------------
    def _sample_visible(self, mean: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _visible_term(self, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The part of the free energy that depends on v alone, (N,)."""
        raise NotImplementedError

    # parameters as scikit-learn names them (numpy views on the CPU; settable, e.g. to copy a model)
    components_ = _numpy_property("_W", "Weights (n_components, n_features).")
    intercept_hidden_ = _numpy_property("_bh", "Hidden biases (n_components,).")
    intercept_visible_ = _numpy_property("_bv", "Visible biases (n_features,).")

    # learning ------------------------------------------------------------------------------------------
    def _init_params(self, n_features: int) -> None:
        dev = self._device()
        if self.n_components < 1 or self.batch_size < 1 or self.k < 1 or self.n_iter < 0:
            raise UserError(f"{type(self).__name__}: n_components, batch_size and k must be >= 1 and n_iter >= 0")
        self._W = torch.randn(self.n_components, n_features, generator=self._rng, device=dev).mul_(0.01)
        self._bh = torch.zeros(self.n_components, device=dev)
        self._bv = torch.zeros(n_features, device=dev)
        self._init_state()

    def _init_state(self) -> None:
        """Zero momentum buffers and persistent chains (also for parameters set by hand)."""
        dev = self._device()
        self._vel = [torch.zeros_like(p) for p in (self._W, self._bh, self._bv)]
        self._chain = torch.zeros(self.batch_size, self.n_components, device=dev)  # persistent hidden samples

    def partial_fit(self, X, y=None):
        """One CD update with X (B, n_features) as the minibatch (as scikit-learn's partial_fit)."""
        first = not hasattr(self, "n_features_in_")
        X = self._check_X(X, reset=first)
        if not hasattr(self, "_rng"):
            self._rng = self._new_generator()
        if first:
            self._init_params(X.shape[1])
        elif not hasattr(self, "_vel"):
            self._init_state()
        self._update(X)
        return self

    def _epoch(self, X: torch.Tensor) -> None:
        for batch in X.split(self.batch_size):
            self._update(batch)

    def _encode(self, v: torch.Tensor) -> torch.Tensor:
        """P(h=1 | v), (N, n_components)."""
        return torch.addmm(self._bh, v, self._W.t()).sigmoid_()

    def _sample_hidden(self, p: torch.Tensor) -> torch.Tensor:
        return bernoulli(p, self._rng)

    @torch.no_grad()
    def _update(self, v_pos: torch.Tensor) -> None:
        """One CD-k / PCD-k step on the minibatch v_pos (B, n_features); no host syncs."""
        h_pos = self._encode(v_pos)
        h = self._chain if self.persistent else self._sample_hidden(h_pos)
        for _ in range(self.k):
            v_neg = self._sample_visible(self._decode(h))
            h_neg = self._encode(v_neg)
            h = self._sample_hidden(h_neg)
        if self.persistent:
            self._chain = h
        a, b = 1.0 / len(v_pos), -1.0 / len(v_neg)  # mean statistics of the data and of the chains
        grads = (torch.mm(h_pos.t(), v_pos).mul_(a).addmm_(h_neg.t(), v_neg, alpha=b),
                 h_pos.sum(0).mul_(a).add_(h_neg.sum(0), alpha=b),
                 v_pos.sum(0).mul_(a).add_(v_neg.sum(0), alpha=b))
        for i, (param, vel, grad) in enumerate(zip((self._W, self._bh, self._bv), self._vel, grads)):
            if i == 0 and self.weight_decay:
                grad.add_(param, alpha=-self.weight_decay)
            if self.momentum:
                param.add_(vel.mul_(self.momentum).add_(grad, alpha=self.learning_rate))
            else:
                param.add_(grad, alpha=self.learning_rate)  # scikit-learn's plain step

    # using a fitted RBM ------------------------------------------------------------------------------
    @torch.no_grad()
    def gibbs(self, V) -> np.ndarray:
        """One Gibbs step from V (N, n_features): sample h ~ P(h | V), return a sample v ~ P(v | h)."""
        v = self._check_X(V)
        if not hasattr(self, "_rng"):
            self._rng = self._new_generator()
        return as_numpy(self._sample_visible(self._decode(self._sample_hidden(self._encode(v)))))

    def _free_energy64(self, v: torch.Tensor) -> torch.Tensor:
        W, bh, bv = (p.double() for p in (self._W, self._bh, self._bv))
        return self._visible_term(v, bv) - torch.nn.functional.softplus(torch.addmm(bh, v, W.t())).sum(1)

    @torch.no_grad()
    def free_energy(self, X) -> np.ndarray:
        """F(v) = -log sum_h exp(-E(v, h)) of each row of X (N, n_features), (N,) float64."""
        return as_numpy(self._free_energy64(self._check_X(X).double()))


def mean_pseudo_likelihood(rbm, X, draws: int = 10) -> float:
    """Mean pseudo-likelihood over the rows of X (N, n_features) and `draws` sets of flipped units.

    The flips of draw i are those scikit-learn draws with random_state=i, so a scikit-learn
    BernoulliRBM (scored by its own score_samples) and ours are compared on the same units.
    """
    values = []
    for seed in range(draws):
        if isinstance(rbm, BernoulliRBM):
            values.append(rbm.score_samples(X, flip=seed).mean())
        else:
            kept = rbm.random_state
            values.append(rbm.set_params(random_state=seed).score_samples(X).mean())
            rbm.set_params(random_state=kept)
    return float(np.mean(values))


class BernoulliRBM(_RBM):
    """RBM with binary visible and binary hidden units; inputs are binary or probabilities in [0, 1].

    Parameters: n_components (hidden units), learning_rate, batch_size, n_iter (epochs), k (Gibbs steps
    per update, CD-k), persistent (PCD: keep the chains between updates), momentum, weight_decay (L2 on
    the weights), random_state, device ('cpu' or 'cuda'), verbose.
    Attributes: components_ (n_components, n_features), intercept_hidden_, intercept_visible_, history_
    (per epoch: reconstruction error and mean pseudo-likelihood on a fixed subset of the data).
    """

    def _decode(self, h: torch.Tensor) -> torch.Tensor:
        """P(v=1 | h), (N, n_features)."""
        return torch.addmm(self._bv, h, self._W).sigmoid_()

    def _sample_visible(self, mean: torch.Tensor) -> torch.Tensor:
        return bernoulli(mean, self._rng)

    def _visible_term(self, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return -(v @ b)

    @torch.no_grad()
    def _pseudo_likelihood(self, v: torch.Tensor, flip: np.ndarray) -> torch.Tensor:
        """F(flipped) - F(v) needs one matmul: flipping unit j moves the hidden inputs by d * W[:, j]."""
        softplus = torch.nn.functional.softplus
        W, bh, bv = (p.double() for p in (self._W, self._bh, self._bv))
        v = v.double()
        cols = torch.as_tensor(flip, dtype=torch.long, device=v.device)
        d = 1 - 2 * v.gather(1, cols[:, None])[:, 0]  # +1 where the unit goes 0 -> 1, -1 where 1 -> 0
        a = torch.addmm(bh, v, W.t())
        diff = -d * bv[cols] - (softplus(a + d[:, None] * W.t()[cols]) - softplus(a)).sum(1)
        return -v.shape[1] * softplus(-diff)  # n_features * log(sigmoid(diff))

    def score_samples(self, X, flip=None) -> np.ndarray:
        """Pseudo-likelihood of each row of X (N, n_features), (N,) float64, as scikit-learn's.

        Each row has one visible unit flipped; PL = n_features * log(sigmoid(F(flipped) - F(v))).
        flip: None draws the units as scikit-learn does (`check_random_state(random_state).randint(0, D, N)`,
        so an int random_state gives scikit-learn's flips); an int seed or a RandomState draws them the
        same way from it; an (N,) integer array names the unit to flip in each row.
        """
        v = self._check_X(X)
        n, d = v.shape
        if flip is None or isinstance(flip, (int, np.integer, np.random.RandomState)):
            flip = check_random_state(self.random_state if flip is None else flip).randint(0, d, n)
        flip = np.asarray(flip)
        if flip.shape != (n,) or flip.min() < 0 or flip.max() >= d:
            raise UserError(f"score_samples: flip must hold {n} unit indices in [0, {d}), got shape {flip.shape}")
        return as_numpy(self._pseudo_likelihood(v, flip))

    def _monitor(self, v: torch.Tensor) -> dict:
        flip = np.random.RandomState(0).randint(0, v.shape[1], len(v))
        return {**super()._monitor(v), "pseudo_likelihood": float(self._pseudo_likelihood(v, flip).mean())}


class GaussianBernoulliRBM(_RBM):
    """RBM with real-valued Gaussian visible units of unit variance and binary hidden units.

    The unit variance is assumed, not learned: standardise each feature first (zero mean, unit
    variance, e.g. sklearn.preprocessing.StandardScaler). E(v, h) = |v - b|^2 / 2 - c.h - v.W'h;
    P(h=1 | v) = sigmoid(W v + c); v | h ~ N(W'h + b, I). Learns the visible bias b, hidden bias c and
    weights W. Real-valued inputs want a much smaller learning rate than binary ones (e.g. 0.001; 0.1 diverges).
    Same parameters and attributes as BernoulliRBM; history_ holds the reconstruction error.
    """

    _unit_interval = False

    def _decode(self, h: torch.Tensor) -> torch.Tensor:
        """E[v | h], (N, n_features)."""
        return torch.addmm(self._bv, h, self._W)

    def _sample_visible(self, mean: torch.Tensor) -> torch.Tensor:
        return mean + torch.randn(mean.shape, generator=self._rng, device=mean.device, dtype=mean.dtype)

    def _visible_term(self, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((v - b) ** 2).sum(1)
