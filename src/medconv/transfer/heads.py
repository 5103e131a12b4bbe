"""A head fitted on frozen features (scikit-learn), turned into an ordinary medconv run.

`fit_head` fits logistic regression (or a small ReLU MLP) on standardised cached features, choosing
the regularisation strength on validation only, then writes the backbone + head as one network
(`--arch feature-head`) into a run directory, so `medconv evaluate` and `medconv predict` work on it
like on any run. The scaler and the fitted weights become nn.Linear layers exactly: the network's
probabilities equal scikit-learn's `predict_proba` on the features (checked in the tests).
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from ..config import TrainConfig
from ..errors import UserError
from ..classify.evaluate import evaluate
from ..classify.train import run_meta
from ..fileio import write_json, write_text
from ..metrics import MULTI_LABEL, acc_score, auc_score
from ..models.feature_head import FeatureHead, LayerFeatures, make_head
from ..progress import make_console
from ..training.checkpoint import save_checkpoint
from ..training.engine import resolve_device
from .features import Features, extract_features

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)          # logistic regression: inverse L2 strength
ALPHA_GRID = (1e-4, 1e-3, 1e-2, 1e-1)           # MLP: L2 penalty


def as_logit_layers(coefs: list[np.ndarray], intercepts: list[np.ndarray], mean: np.ndarray,
                    scale: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's (D_in, D_out) weights after a StandardScaler -> [(weight (out, in), bias)] on raw
    features; a single logistic output z becomes the two logits [0, z] (softmax([0, z])[1] = sigmoid(z))."""
    layers = []
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        w, b = w.T.astype(np.float64), b.astype(np.float64)
        if i == 0:  # fold (x - mean) / scale into the first layer
            w, b = w / scale, b - (w / scale) @ mean
        layers.append((w, b))
    w, b = layers[-1]
    if w.shape[0] == 1:
        layers[-1] = (np.vstack([np.zeros_like(w), w]), np.concatenate([[0.0], b]))
    return layers


def fit_candidates(feats: Features, head: str, seed: int, select_metric: str):
    """[(setting, fitted estimator, val auc, val acc)] over the regularisation grid."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    (x, y), (xv, yv) = feats.splits["train"], feats.splits["val"]
    scaler = StandardScaler().fit(x)
    results = []
    for value in (C_GRID if head == "logreg" else ALPHA_GRID):
        model = (LogisticRegression(C=value, max_iter=2000) if head == "logreg" else
                 MLPClassifier((256,), alpha=value, max_iter=500, random_state=seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings: the validation score judges the fit
            model.fit(scaler.transform(x), y[:, 0])
        p = model.predict_proba(scaler.transform(xv))
        results.append((value, model, auc_score(yv, p, feats.info.task), acc_score(yv, p, feats.info.task)))
    best = max(results, key=lambda r: r[2] if select_metric == "auc" else r[3])
    return results, best, scaler


def fit_head(cfg: TrainConfig, out: str | Path, head: str = "logreg", layer: str | None = None,
             cache_dir: str | Path | None = None, device: str = "auto", console: Console | None = None) -> dict:
    """Fit a head on cached features of backbone cfg.arch (weights cfg.init_from); write run directory `out`."""

    device = str(resolve_device(device))  # auto: CUDA when there is one
    console = console or make_console()
    out = Path(out)
    if (out / "metrics.json").exists() or (out / "checkpoints").exists():
        raise UserError(f"{out} already holds a run: choose another --out")
    if head not in ("logreg", "mlp"):
        raise UserError(f"--head {head!r}: expected logreg or mlp")
    tic = time.time()
    feats = extract_features(cfg, layer, cache_dir, device, console)
    if feats.info.task == MULTI_LABEL:
        raise UserError("transfer fit: multi-label tasks are not supported by the fitted heads; use medconv train "
                        "--init-from WEIGHTS --finetune head")
    results, (value, estimator, val_auc, val_acc), scaler = fit_candidates(feats, head, cfg.seed, cfg.select_metric)
    coefs, intercepts = (([estimator.coef_.T], [estimator.intercept_]) if head == "logreg"
                         else (estimator.coefs_, estimator.intercepts_))
    layers = as_logit_layers(coefs, intercepts, scaler.mean_, scaler.scale_)
    dim = feats.splits["train"][0].shape[1]
    options = {"backbone": cfg.arch, "backbone_options": cfg.model_options, "layer": feats.layer, "features": dim,
               "hidden": [w.shape[0] for w, _ in layers[:-1]]}
    run_cfg = dataclasses.replace(cfg, arch="feature-head", model_options=options)
    info = feats.info
    model = FeatureHead(LayerFeatures(feats.backbone, feats.layer, cfg.arch), make_head([dim, *options["hidden"]],
                                                                                         info.num_outputs))
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for linear, (w, b) in zip(linears, layers):
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
    history = [{"setting": v, "val_auc": a, "val_acc": c} for v, _, a, c in results]
    meta = {**run_meta(run_cfg, info, feats.mean, feats.std), "epoch": 1, "best_epoch": 1, "val_metric": val_auc,
            "head": {"kind": head, "chosen": value, "grid": history, "features_cache": str(feats.path)}}
    for which in ("best", "last"):
        save_checkpoint(out / "checkpoints" / f"{which}.safetensors", model.eval(), meta)
    write_text(out / "config.yaml", run_cfg.dump())
    setting = "C" if head == "logreg" else "alpha"
    console.print(f"{head} on {dim} '{feats.layer}' features: {setting}={value} chosen on validation "
                  f"(val AUC {val_auc:.4f}, ACC {val_acc:.4f})")
    result = {"dataset": info.name, "arch": "feature-head", "backbone": cfg.arch, "weights": cfg.init_from,
              "layer": feats.layer, "head": head, setting: value, "grid": history,
              "features_from_cache": feats.from_cache, "fit_seconds": round(time.time() - tic, 1)}
    for split in ("val", "test"):
        result[split] = evaluate(out, split, device=device)
    write_json(out / "metrics.json", result)
    console.print(f"val AUC {result['val']['auc']:.4f} ACC {result['val']['acc']:.4f}, test AUC "
                  f"{result['test']['auc']:.4f} ACC {result['test']['acc']:.4f}  ->  {out}", highlight=False)
    return result

