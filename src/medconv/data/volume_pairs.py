"""Volumes with label maps for 3D segmentation: a CSV manifest ``image,mask[,split][,subject]`` of NIfTI files
or DICOM series folders, or ``msd_hippocampus`` (the Medical Segmentation Decathlon's Task04 training set with
its fixed split: cases sorted by id, every 5th test, the next validation). Images go to [0, 1] as volumes for
classification do (data.volume_sets.to_unit: a CT window, else per-volume percentiles) and stay at their native
shape; label maps are read as class indices (data.segmentation.read_classes). Splits per subject
(data.splits)."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from medconv.data.medmnist import data_root as resolve_root
from medconv.data.segmentation import SPLITS, SegImage, SegInfo, manifest_rows, parse_value_map, read_classes
from medconv.data.splits import Row, assign_splits
from medconv.data.volume_sets import to_unit
from medconv.data.volumes import VolumeMeta, read_volume, resample
from medconv.errors import UserError

HIPPOCAMPUS_CLASSES = ["background", "anterior", "posterior"]
HIPPOCAMPUS_NAMES = ("msd_hippocampus", "hippocampus")


def volume_name(path: str | Path) -> str:
    """A volume's name: the file name without .nii.gz, .nii or .dcm (a DICOM series: its folder's name)."""
    name = Path(path).name
    for ending in (".nii.gz", ".nii", ".dcm"):
        if name.lower().endswith(ending):
            return name[: -len(ending)]
    return name


def hippocampus_rows(root: str | None) -> list[dict]:
    """MSD Task04's labelled cases, sorted by id: position p (0-based) is test when p % 5 == 4, validation when
    p % 5 == 0 and p > 0 (the case after a test case), else train."""
    base = resolve_root(root)
    folder = base if (base / "imagesTr").is_dir() else base / "msd_hippocampus"
    files = [f for f in (folder / "imagesTr").glob("*.nii.gz") if not f.name.startswith(".")]
    if not files:
        raise UserError(f"msd_hippocampus not found: expected imagesTr/*.nii.gz and labelsTr/ in {folder} (set "
                        "--data-root or MEDCONV_DATA)")
    files.sort(key=lambda f: int(re.sub(r"\D", "", f.name.split(".")[0]) or 0))
    return [{"name": volume_name(f), "image": f, "mask": folder / "labelsTr" / f.name,
             "split": "test" if p % 5 == 4 else "val" if p % 5 == 0 and p > 0 else "train", "subject": None,
             "where": None} for p, f in enumerate(files)]


def split_by_subject(rows: list[dict], val_fraction: float, test_fraction: float, seed: int, source: str) -> None:
    """Fill each row's split: the given ones (checked: no subject in two splits), or drawn per subject."""
    items = [Row(Path(r["image"]), 0, r["split"], r["subject"], r["where"]) for r in rows]
    for split, idx in assign_splits(items, val_fraction, test_fraction, seed, source).items():
        for i in idx:
            rows[i]["split"] = split


def read_pair(row: dict, window: tuple[float, float] | None, spacing: tuple[float, float, float] | None = None
              ) -> tuple[np.ndarray, np.ndarray | None, str, VolumeMeta]:
    """A row's image (1, D, H, W) in [0, 1], its raw label map (D, H, W) int64 or None (both resampled to
    `spacing` mm when given: trilinear and nearest), how the values were scaled, and the image's VolumeMeta (of
    the file as stored)."""
    where = f"{row['where']}: " if row.get("where") else ""
    try:
        volume, meta = read_volume(row["image"])
        mask = None
        if row["mask"] is not None:
            labels, _ = read_volume(row["mask"])
            if labels.shape != volume.shape:
                raise UserError(f"image {row['image']} is {'x'.join(map(str, volume.shape))} but mask {row['mask']} "
                                f"is {'x'.join(map(str, labels.shape))} (D x H x W): they must lie on one grid")
            if not np.array_equal(labels, np.round(labels)):
                raise UserError(f"mask {row['mask']} holds non-integer values: expected class indices")
            mask = labels
        if spacing is not None:
            volume = resample(volume, meta.spacing, spacing, where=str(row["image"]))
            mask = None if mask is None else resample(mask, meta.spacing, spacing, labels=True)
        mask = None if mask is None else np.round(mask).astype(np.int64)
    except UserError as exc:
        raise UserError(f"{where}{exc}") from None
    unit, how = to_unit(volume, meta, window)
    return unit[None], mask, how, meta


def load_volume_segmentation(manifest: str | None = None, dataset: str | None = None, data_root: str | None = None,
                             value_map: str | None = None, classes: list[str] | None = None,
                             window: tuple[float, float] | None = None, val_fraction: float = 0.2,
                             test_fraction: float = 0.2, seed: int = 0, mask_type: str | None = None,
                             spacing: tuple[float, float, float] | None = None
                             ) -> tuple[SegInfo, dict[str, list[SegImage]]]:
    """-> (SegInfo, {"train", "val", "test": [SegImage with image (1, D, H, W) float32 in [0, 1], mask (D, H, W)
    int64, source = the image file]})."""
    notes = []
    if dataset is not None:
        if str(dataset).lower() not in HIPPOCAMPUS_NAMES:
            raise UserError(f"unknown volume segmentation dataset {dataset!r}: expected msd_hippocampus, or a "
                            "--manifest of volumes")
        rows, name, source = hippocampus_rows(data_root), "msd_hippocampus", "msd_hippocampus"
        classes = classes or HIPPOCAMPUS_CLASSES
        notes.append("MSD hippocampus fixed split: cases sorted by id, every 5th test, the next validation")
    else:
        rows, name, source = manifest_rows(Path(manifest)), Path(manifest).stem, str(manifest)
        if any(r["split"] is None for r in rows) or any(r["subject"] for r in rows):
            split_by_subject(rows, val_fraction, test_fraction, seed, source)
    read = [read_pair(r, window, spacing) for r in rows]
    raw = {str(r["mask"]): m for r, (_, m, _, _) in zip(rows, read) if m is not None}
    mapped, _, classes = read_classes(raw, parse_value_map(value_map), classes, mask_type)
    out: dict[str, list[SegImage]] = {s: [] for s in SPLITS}
    for r, (image, mask, _, meta) in zip(rows, read):
        out[r["split"]].append(SegImage(volume_name(r["image"]), image, mapped.get(str(r["mask"])), source=str(r["image"]),
                                        spacing=spacing or meta.spacing))
    shapes = Counter(im.shape[1:] for im, *_ in read)
    resampled = f" -> resampled to {'x'.join(f'{s:g}' for s in spacing)} (MONAI's Spacing)" if spacing else ""
    spacings = Counter(tuple(round(s, 3) for s in m.spacing) if m.spacing else None for *_, m in read)
    hows = Counter(how for _, _, how, _ in read)
    summary = ["volumes: " + ", ".join(f"{'x'.join(map(str, s))} ({c})" for s, c in shapes.most_common(4))
               + (f" and {len(shapes) - 4} more shapes" if len(shapes) > 4 else "")
               + (" (D x H x W, after resampling)" if spacing else " (D x H x W, native)"),
               "voxel spacing (mm, D x H x W): " + ", ".join(f"{'x'.join(map(str, s)) if s else 'not given'} ({c})"
                                                           for s, c in spacings.most_common(3)) + resampled,
               "values -> [0, 1] by " + "; ".join(f"{k} ({c})" for k, c in hows.most_common()),
               *(f"{k} {len(v)} volumes" for k, v in out.items())]
    return SegInfo(name=name, classes=list(classes), channels=1, notes=notes, summary=summary), out
