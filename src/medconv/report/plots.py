"""PNG plots of a run: training curves, ROC curves, confusion matrix (matplotlib, Agg backend)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from ..fileio import atomic_write  # noqa: E402
from ..metrics import MULTI_LABEL  # noqa: E402


def save_figure(fig, path: str | Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
    plt.close(fig)


def plot_training_curves(history: list[dict], path: str | Path, best_epoch: int | None = None) -> None:
    """Loss (train, val) and validation AUC/ACC per epoch, side by side."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train loss")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], label="validation loss")
    ax_metric.plot(epochs, [r["val_auc"] for r in history], label="validation AUC")
    ax_metric.plot(epochs, [r["val_acc"] for r in history], label="validation ACC")
    for ax in (ax_loss, ax_metric):
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_title("loss")
    ax_metric.set_title("validation metrics")
    save_figure(fig, path)


def plot_roc(y_true: np.ndarray, y_score: np.ndarray, task: str, classes: list[str], path: str | Path,
             title: str = "") -> None:
    """ROC of the positive class (binary) or one curve per class / label (one-vs-rest)."""
    y_true = np.asarray(y_true)
    if task == "binary-class":
        curves = [(classes[-1], y_true.reshape(-1) == 1, y_score[:, -1])]
    elif task == MULTI_LABEL:
        curves = [(c, y_true[:, i] == 1, y_score[:, i]) for i, c in enumerate(classes)]
    else:
        curves = [(c, y_true.reshape(-1) == i, y_score[:, i]) for i, c in enumerate(classes)]
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, positive, score in curves:
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, score)
        ax.plot(fpr, tpr, label=str(name)[:30])
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "ROC")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def plot_confusion(matrix: list[list[int]], classes: list[str], path: str | Path, title: str = "") -> None:
    """Counts with row-normalised shading (rows: truth, columns: prediction)."""
    m = np.asarray(matrix)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * k, 1 + 0.7 * k))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    labels = [str(c)[:18] for c in classes]
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    save_figure(fig, path)
