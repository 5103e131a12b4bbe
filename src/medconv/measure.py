"""Structure volumes in mm³ from label maps (NIfTI, DICOM series, ...), and their error against reference maps:
hippocampal volume is the classic Alzheimer's biomarker. Volume = voxels of a label x the voxel's volume (the
product of the file's spacing); torch-free."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from medconv.data.volumes import read_volume
from medconv.errors import UserError


def label_volumes(labels: np.ndarray, spacing: Sequence[float]) -> dict[int, tuple[int, float]]:
    """{label: (voxels, volume in mm³)} of every non-zero label of an integer map (D, H, W) with voxel spacing
    (3,) in mm."""
    counts = np.bincount(labels.reshape(-1))
    voxel = float(np.prod(spacing))
    return {int(k): (int(counts[k]), float(counts[k]) * voxel) for k in np.flatnonzero(counts) if k > 0}


def read_labels(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A label map -> int64 (D, H, W) and its spacing in mm; refused when its values are not whole numbers of at
    least 0 or when the file does not give its spacing."""
    volume, meta = read_volume(path)
    if volume.size and (volume.min() < 0 or not np.array_equal(volume, np.round(volume))):
        raise UserError(f"{path}: not a label map (values must be whole numbers of 0 or more; 0 is background)")
    if meta.spacing is None:
        raise UserError(f"{path}: the file gives no voxel spacing, so volumes in mm³ cannot be measured")
    return volume.astype(np.int64), meta.spacing


def parse_names(spec: str | None) -> dict[int, str]:
    """"1:anterior,2:posterior" -> {1: "anterior", 2: "posterior"}; None -> {}."""
    names: dict[int, str] = {}
    for item in [p.strip() for p in (spec or "").split(",") if p.strip()]:
        value, _, name = item.partition(":")
        if not value.strip().isdigit() or not name.strip():
            raise UserError(f"--names {spec!r}: expected LABEL:NAME pairs such as 1:anterior,2:posterior")
        names[int(value)] = name.strip()
    return names


def measure(labels: Sequence[str | Path], references: Sequence[str | Path] = (), names: dict[int, str] | None = None
            ) -> list[dict]:
    """One row per label map and structure: file, label, name, voxels, volume_mm3; with `references` (one per
    map, in the same order) also reference_mm3 and relative_error = (volume - reference) / reference, over the
    labels either map holds (a structure missing from one side counts 0 voxels there)."""
    if references and len(references) != len(labels):
        raise UserError(f"--reference: {len(references)} reference maps for {len(labels)} label maps; give one per map")
    names = names or {}
    rows = []
    for i, path in enumerate(labels):
        found = label_volumes(*read_labels(path))
        ref = label_volumes(*read_labels(references[i])) if references else None
        for label in sorted(set(found) | set(ref or {})):
            voxels, volume = found.get(label, (0, 0.0))
            row = {"file": str(path), "label": label, "name": names.get(label, ""), "voxels": voxels,
                   "volume_mm3": round(volume, 3)}
            if ref is not None:
                reference = ref.get(label, (0, 0.0))[1]
                row.update(reference=str(references[i]), reference_mm3=round(reference, 3),
                           relative_error=round((volume - reference) / reference, 6) if reference else "")
            rows.append(row)
    return rows
