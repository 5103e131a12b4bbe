"""Prediction rows of image files from their class probabilities (numpy only: `predict` by torch or by an ONNX
export writes the same rows)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..metrics import predicted_labels


def prediction_rows(files: list[Path], scores: np.ndarray, classes: list[str], task: str) -> list[dict]:
    """A row {path, prob_<class>..., predicted} per file, from probabilities (N, K); multi-label predictions
    are the classes above 0.5 joined by ";"."""
    rows = []
    for f, s, p in zip(files, scores, predicted_labels(scores, task)):
        row = {"path": str(f), **{f"prob_{c}": round(float(v), 6) for c, v in zip(classes, s)}}
        row["predicted"] = ";".join(classes[i] for i in np.flatnonzero(p)) if np.ndim(p) else classes[int(p)]
        rows.append(row)
    return rows
