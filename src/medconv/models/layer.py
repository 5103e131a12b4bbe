"""What RBMs (rbm.py) and autoencoders (autoencoder.py) share: a trainable layer, scikit-learn style,
on torch: input checks, the seeded generator, the epoch loop with its per-epoch history, transform and
reconstruct."""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

from ..errors import TrainingDiverged, UserError

MONITOR_ROWS = 1000  # rows of the training data scored after every epoch (a fixed subset)


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A numpy array of a tensor: a view of it (shared memory) on the CPU, a copy from a GPU."""
    return t.detach().cpu().numpy()


class TorchLayer(TransformerMixin, BaseEstimator):
    """One trainable layer, scikit-learn style: parameters in __init__, learning in fit.

    Subclasses define `_init_params(n_features)`, `_epoch(X)`, `_encode(v)` and `_decode(h)` on
    float32 tensors; `_unit_interval` says whether inputs must lie in [0, 1].
    """

    _unit_interval = True

    def _keep_params(self, params: dict) -> None:
        """Store __init__'s arguments (its `locals()`) unchanged as attributes, as scikit-learn expects."""
        for name, value in params.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    # --- input, device, random numbers -------------------------------------------------------------
    def _device(self) -> torch.device:
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise UserError(f"device '{self.device}' is not a torch device: expected 'cpu', 'cuda' or 'cuda:N'") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"device '{self.device}' was asked for, but CUDA is not available here: use device='cpu'")
        return device

    def _check_X(self, X, reset: bool = False) -> torch.Tensor:
        """X (N, n_features) as a float32 tensor on the device; a one-line UserError if it is unusable."""
        name = type(self).__name__
        if isinstance(X, torch.Tensor):
            t = X.detach()
        else:
            a = np.ascontiguousarray(X)
            try:
                t = torch.from_numpy(a if a.dtype.kind in "buif" and a.dtype.itemsize <= 8 else a.astype(np.float32))
            except (TypeError, ValueError) as exc:
                raise UserError(f"{name}: X is not a numeric array ({exc})") from None
        if t.ndim != 2:
            raise UserError(f"{name}: X must be 2-D (n_samples, n_features), got shape {tuple(t.shape)}: "
                            "flatten images with X.reshape(len(X), -1)")
        if t.shape[0] == 0 or t.shape[1] == 0:
            raise UserError(f"{name}: X is empty (shape {tuple(t.shape)})")
        t = t.to(self._device()).to(torch.float32)  # small dtypes (bool, uint8) travel to the GPU as they are
        lo, hi = (float(x) for x in torch.aminmax(t))  # one pass; NaN and inf show up here
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = int((~torch.isfinite(t)).sum())
            raise UserError(f"{name}: X contains {bad} NaN or infinite value(s): remove or impute them first")
        if self._unit_interval and (lo < 0.0 or hi > 1.0):
            raise UserError(f"{name}: X must hold binary values or probabilities in [0, 1], found values from "
                            f"{lo:g} to {hi:g}: binarise or scale it first (e.g. X >= 128 for 8-bit images)")
        if reset:
            self.n_features_in_ = t.shape[1]
        else:
            self._check_fitted()
            if t.shape[1] != self.n_features_in_:
                raise UserError(f"{name}: X has {t.shape[1]} features, but this model was fitted on "
                                f"{self.n_features_in_}")
        return t

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(X) first")

    def _seed(self) -> int:
        """A seed drawn from random_state (int, RandomState or None), as scikit-learn draws one."""
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _new_generator(self) -> torch.Generator:
        g = torch.Generator(device=self._device())
        g.manual_seed(self._seed())
        return g

    # --- learning ------------------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Learn from X (N, n_features) for n_iter epochs; history_ holds one row of metrics per epoch."""
        X = self._check_X(X, reset=True)
        self._rng = self._new_generator()
        self._init_params(X.shape[1])
        picks = np.random.RandomState(self._seed()).permutation(len(X))[:MONITOR_ROWS]
        monitor = X[torch.as_tensor(np.sort(picks), device=X.device)]
        self.history_ = []
        for epoch in range(1, self.n_iter + 1):
            tic = time.perf_counter()
            self._epoch(X)
            row = {"epoch": epoch, **self._monitor(monitor), "seconds": round(time.perf_counter() - tic, 4)}
            if not np.isfinite(row["reconstruction_error"]):
                raise TrainingDiverged(f"{type(self).__name__}: training diverged (NaN or infinite reconstruction "
                                       f"error) in epoch {epoch}: lower learning_rate (now {self.learning_rate})")
            self.history_.append(row)
            if self.verbose:
                print(f"[{type(self).__name__}] " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)
        return self

    @torch.no_grad()
    def _monitor(self, v: torch.Tensor) -> dict:
        return {"reconstruction_error": float(((self._decode(self._encode(v)) - v) ** 2).mean())}

    # --- using a fitted layer -----------------------------------------------------------------------
    @torch.no_grad()
    def transform(self, X) -> np.ndarray:
        """Codes of X (N, n_features): hidden probabilities / activations, (N, n_components) float32."""
        return as_numpy(self._encode(self._check_X(X)))

    @torch.no_grad()
    def reconstruct(self, X) -> np.ndarray:
        """Mean-field reconstruction of X (N, n_features): decode(encode(X)), (N, n_features)."""
        return as_numpy(self._decode(self._encode(self._check_X(X))))

    @torch.no_grad()
    def reconstruction_error(self, X) -> float:
        """Mean squared error per value between X (N, n_features) and its reconstruction."""
        v = self._check_X(X)
        return float(((self._decode(self._encode(v)) - v) ** 2).mean())
