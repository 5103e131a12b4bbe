"""Reading a network trained on a taxonomy's leaves at a coarser level (Esteva et al. 2017).

A run trained with `--taxonomy TREE.yaml` keeps the tree's path; `medconv evaluate RUN --level coarse`
and `medconv predict RUN ... --level coarse` sum the leaf probabilities (N, L) of each class of the
level into (N, K) and map the true leaf labels to the class that holds them.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError
from .taxonomy import Taxonomy
from .types import ImageSet


def run_taxonomy(meta: dict, level: str) -> Taxonomy:
    """The taxonomy a run was trained with (its classes are the tree's leaves)."""
    path = meta["config"].get("taxonomy")
    if not path:
        raise UserError(f"--level {level}: this run was trained without --taxonomy TREE.yaml, so it has no levels")
    taxonomy = Taxonomy.from_yaml(path)
    taxonomy.check_leaves(meta["classes"])
    return taxonomy


def at_level(meta: dict, level: str, scores: np.ndarray, labels: np.ndarray | None = None):
    """(scores (N, K), labels (N, 1) or None, classes, task) of the run's leaf scores (N, L) at `level`."""
    taxonomy = run_taxonomy(meta, level)
    classes = taxonomy.classes_at(level)
    matrix = taxonomy.aggregation_matrix(level, meta["classes"])  # (L, K)
    summed = np.asarray(scores, dtype=np.float64) @ matrix
    mapped = None if labels is None else np.argmax(matrix[np.asarray(labels).reshape(-1)], axis=1)[:, None]
    return summed, mapped, classes, "binary-class" if len(classes) == 2 else "multi-class"


def relabelled(info, sets: dict, taxonomy_path: str, level: str | None):
    """Check the dataset's classes are the tree's leaves; with `level`, map each leaf label to the class of
    that level holding it. Returns (info, sets) with (N, 1) labels over classes_at(level)."""

    taxonomy = Taxonomy.from_yaml(taxonomy_path)
    taxonomy.check_leaves(info.classes)
    if not level:
        return info, sets
    matrix = taxonomy.aggregation_matrix(level, info.classes)  # (L, K)
    to_level = np.argmax(matrix, axis=1)
    sets = {name: ImageSet(s.images, torch.from_numpy(to_level[s.labels.numpy().reshape(-1)][:, None]), s.paths)
            for name, s in sets.items()}
    info.classes = taxonomy.classes_at(level)
    info.task = "binary-class" if len(info.classes) == 2 else "multi-class"
    info.notes.append(f"labels summed up to level {level!r} of {taxonomy_path}: {', '.join(info.classes)}")
    return info, sets
