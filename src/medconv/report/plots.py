"""PNG plots of a run: training curves, ROC and precision-recall curves, confusion matrix (matplotlib, Agg
backend)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from ..fileio import atomic_write  # noqa: E402
from ..metrics import MULTI_LABEL  # noqa: E402


def save_figure(fig, path: str | Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png"))
    plt.close(fig)


def one_vs_rest(y_true: np.ndarray, y_score: np.ndarray, task: str, classes: list[str]
                ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The curves a task's ROC and precision-recall plots draw, as (name, positive (N,) bool, score (N,)) from labels
    y_true (N, 1) or (N, L) and probabilities y_score (N, K): the positive (last) class of a binary task, each class
    against the rest, or each label of a multi-label task; a curve whose positives are none or all is left out."""
    y_true = np.asarray(y_true)
    if task == "binary-class":
        curves = [(classes[-1], y_true.reshape(-1) == 1, y_score[:, -1])]
    elif task == MULTI_LABEL:
        curves = [(c, y_true[:, i] == 1, y_score[:, i]) for i, c in enumerate(classes)]
    else:
        curves = [(c, y_true.reshape(-1) == i, y_score[:, i]) for i, c in enumerate(classes)]
    return [(str(name), positive, score) for name, positive, score in curves if 0 < positive.sum() < len(positive)]


def plot_roc(y_true: np.ndarray, y_score: np.ndarray, task: str, classes: list[str], path: str | Path,
             title: str = "") -> None:
    """ROC of the positive class (binary) or one curve per class / label (one-vs-rest)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, positive, score in one_vs_rest(y_true, y_score, task, classes):
        fpr, tpr, _ = roc_curve(positive, score)
        ax.plot(fpr, tpr, label=str(name)[:30])
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "ROC")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def plot_pr(y_true: np.ndarray, y_score: np.ndarray, task: str, classes: list[str], path: str | Path,
            title: str = "") -> dict[str, float]:
    """Precision-recall curves of labels y_true (N, 1) or (N, L) and probabilities y_score (N, K), the curves
    plot_roc draws, each with its average precision (the precision at each threshold weighted by the recall it
    adds, as sklearn's average_precision_score) in the legend; returns {curve name: average precision}."""
    fig, ax = plt.subplots(figsize=(5, 5))
    found = {}
    for name, positive, score in one_vs_rest(y_true, y_score, task, classes):
        precision, recall, _ = precision_recall_curve(positive, score)
        found[name] = float(-np.sum(np.diff(recall) * precision[:-1]))  # recall falls along the curve
        ax.step(recall, precision, where="post", label=f"{name[:30]} (AP {found[name]:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title or "precision-recall")
    if found:
        ax.legend(fontsize=7, loc="lower left")
    save_figure(fig, path)
    return found


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
