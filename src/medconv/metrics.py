"""Classification metrics, AUC and ACC computed exactly as `medmnist.Evaluator` computes them.

y_true: (N,) or (N, 1) class indices, or (N, L) 0/1 for multi-label tasks.
y_score: (N, K) probabilities (softmax, or sigmoid per label for multi-label tasks).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# scikit-learn is imported inside the functions that use it: it takes about a second, and commands that
# only predict (detect predict, predict through an ONNX export) never need it; torch is not imported at all

MULTI_LABEL = "multi-label, binary-class"


def scores_from_logits(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Probabilities (N, K) from logits (N, K): sigmoid per label for multi-label, else softmax."""
    return logits.sigmoid() if task == MULTI_LABEL else logits.softmax(dim=1)


def _safe_auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else math.nan


def auc_score(y_true: np.ndarray, y_score: np.ndarray, task: str) -> float:
    """Binary: AUC of the last column; multi-label: mean AUC per label; otherwise mean one-vs-rest."""
    y_true, y_score = np.asarray(y_true).squeeze(), np.asarray(y_score).squeeze()
    if task == "binary-class":
        return _safe_auc(y_true, y_score[:, -1] if y_score.ndim == 2 else y_score)
    if task == MULTI_LABEL:
        return float(np.mean([_safe_auc(y_true[:, i], y_score[:, i]) for i in range(y_score.shape[1])]))
    return float(np.mean([_safe_auc((y_true == i).astype(float), y_score[:, i]) for i in range(y_score.shape[1])]))


def predicted_labels(y_score: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    """Binary: last column > threshold; multi-label: each score > threshold; otherwise argmax."""
    y_score = np.asarray(y_score)
    if task == "binary-class":
        return (y_score[:, -1] > threshold).astype(np.int64) if y_score.ndim == 2 else (y_score > threshold).astype(np.int64)
    if task == MULTI_LABEL:
        return (y_score > threshold).astype(np.int64)
    return np.argmax(y_score, axis=-1)


def acc_score(y_true: np.ndarray, y_score: np.ndarray, task: str, threshold: float = 0.5) -> float:
    """Accuracy at `threshold` (binary, multi-label: mean over labels) or of the argmax."""
    y_true, y_score = np.asarray(y_true).squeeze(), np.asarray(y_score).squeeze()
    from sklearn.metrics import accuracy_score

    pred = predicted_labels(y_score, task, threshold)
    if task == MULTI_LABEL:
        return float(np.mean([accuracy_score(y_true[:, i], pred[:, i]) for i in range(y_true.shape[1])]))
    return float(accuracy_score(y_true, pred))


def classification_metrics(y_true: np.ndarray, y_score: np.ndarray, task: str, classes: list[str]) -> dict:
    """AUC, ACC, balanced accuracy, per-class precision/recall/F1/support and the confusion matrix."""
    from sklearn.metrics import (
        balanced_accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
    )

    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    out = {"n": int(len(y_true)), "auc": auc_score(y_true, y_score, task), "acc": acc_score(y_true, y_score, task)}
    pred = predicted_labels(y_score, task)
    if task == MULTI_LABEL:
        truth = y_true.reshape(len(y_true), -1)
        p, r, f, s = precision_recall_fscore_support(truth, pred, zero_division=0)
        out["balanced_accuracy"] = float(np.mean([balanced_accuracy_score(truth[:, i], pred[:, i])
                                                  for i in range(truth.shape[1])]))
    else:
        truth = y_true.reshape(-1)
        labels = list(range(len(classes)))
        p, r, f, s = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
        out["balanced_accuracy"] = float(balanced_accuracy_score(truth, pred))
        out["confusion_matrix"] = confusion_matrix(truth, pred, labels=labels).tolist()
    out["per_class"] = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                               "support": int(s[i])} for i, name in enumerate(classes)}
    out["macro_f1"] = float(np.mean(f))
    out["weighted_f1"] = float(np.average(f, weights=s)) if np.sum(s) else math.nan  # weighted by support
    return out
