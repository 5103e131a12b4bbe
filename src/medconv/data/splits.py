"""Splitting a dataset's items into train/val/test: given splits, or drawn ones (stratified by class, or by group:
one subject's items never in two splits)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from medconv.data.images import one_line
from medconv.errors import UserError

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}


@dataclass
class Row:
    """One image of a dataset before reading: file, class index, given split, group, where from."""

    path: Path
    label: int
    split: str | None = None
    group: str | None = None
    where: str | None = None  # e.g. "labels.csv line 7", prefixed to read errors


def holdout(idx: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, fraction: float,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices `idx` into (kept, held out): group-wise if groups, else stratified if possible."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    pos = np.arange(len(idx))
    if groups is not None:
        keep, held = next(GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
                          .split(pos, groups=groups[idx]))
    else:
        try:
            keep, held = train_test_split(pos, test_size=fraction, random_state=seed,
                                          stratify=labels[idx])
        except ValueError:  # a class too small to stratify: fall back to a plain shuffle
            keep, held = train_test_split(pos, test_size=fraction, random_state=seed)
    return np.sort(idx[keep]), np.sort(idx[held])


def assign_splits(rows: Sequence[Row], val_fraction: float, test_fraction: float, seed: int,
                   source: str) -> dict[str, np.ndarray]:
    """Row indices of each split: the given splits, or new ones (val split off train if missing)."""
    labels = np.array([r.label for r in rows])
    has_groups = any(r.group is not None for r in rows)
    groups = (np.array([r.group if r.group is not None else f"\0row{i}" for i, r in enumerate(rows)],
                       dtype=object) if has_groups else None)
    given = np.array([r.split or "" for r in rows], dtype=object)
    try:
        if all(r.split is None for r in rows):
            rest, test = holdout(np.arange(len(rows)), labels, groups, test_fraction, seed)
            train, val = holdout(rest, labels, groups, val_fraction / (1.0 - test_fraction), seed)
        else:
            train, val, test = (np.flatnonzero(given == s) for s in SPLITS)
            if len(val) == 0 and len(train) > 0:
                train, val = holdout(train, labels, groups, val_fraction, seed)
    except ValueError as exc:
        unit = f"{len(set(groups))} groups" if groups is not None else f"{len(rows)} images"
        raise UserError(f"{source}: too small to split ({unit}) into train/val/test with "
                        f"val_fraction={val_fraction} and test_fraction={test_fraction}; add images "
                        f"or give the splits yourself ({one_line(exc)})") from None
    out = {"train": train, "val": val, "test": test}
    for name, idx in out.items():
        if len(idx) == 0:
            raise UserError(f"{source}: the {name} split has no images; every split needs at least one")
    if groups is not None:
        check_groups_apart(out, rows, source)
    return out


def check_groups_apart(splits: dict[str, np.ndarray], rows: Sequence[Row], source: str) -> None:
    """Refuse a group (a subject, a patient) whose images lie in two splits: its images would be seen in
    training and scored as unseen."""
    seen: dict[str, str] = {}
    for name, idx in splits.items():
        for i in idx:
            group = rows[i].group
            if group is None:
                continue
            if seen.setdefault(group, name) != name:
                raise UserError(f"{source}: subject/group {group!r} has images in both the {seen[group]} and the "
                                f"{name} split ({rows[i].where or rows[i].path}); one subject belongs to one split")


def class_counts(rows: Sequence[Row], splits: dict[str, np.ndarray], classes: int) -> dict[str, list[int]]:
    """{split: items per class index} (for data.summary.split_lines)."""
    return {split: np.bincount([rows[i].label for i in idx], minlength=classes).tolist()
            for split, idx in splits.items()}
