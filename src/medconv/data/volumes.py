"""Volumes: NIfTI files, DICOM series (a folder of slices), multi-frame DICOM and multi-page TIFF -> float32
(D, H, W) arrays of the stored values (DICOM: after the modality LUT, Hounsfield units for CT) with their voxel
spacing and affine. DICOM series go through MONAI's PydicomReader (it sorts the slices and computes the
affine); files through data.readers (NIfTI by nibabel).

Axes: arrays are (D, H, W) = (slice, row, column), the file's voxel axes (i, j, k) reversed, and `spacing` is
in the same order; `affine` maps the file's voxel indices (i, j, k, 1) to world millimetres (RAS for NIfTI and
for DICOM through MONAI), so a label map written back is transposed to (i, j, k) first.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medconv.data.images import one_line, read_stored
from medconv.errors import UserError
from medconv.fileio import atomic_write



@dataclass
class VolumeMeta:
    """path; format (nifti, dicom-series, dicom, tiff); shape (D, H, W); spacing (D, H, W) in mm (None when the
    file does not say); affine 4x4 voxel (i, j, k) -> world mm, or None; units "HU" for CT; dtype as stored."""

    path: str
    format: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float] | None
    affine: np.ndarray | None
    units: str = ""
    dtype: str = ""


def series_uids(folder: Path) -> dict[str, list[Path]]:
    """DICOM files of `folder` by SeriesInstanceUID (headers only)."""
    import pydicom

    found: dict[str, list[Path]] = {}
    for f in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if not pydicom.misc.is_dicom(f):
            continue
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        found.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(f)
    return found


def _read_series(folder: Path) -> tuple[np.ndarray, VolumeMeta]:
    import pydicom
    from monai.data import PydicomReader
    from monai.transforms import LoadImage

    series = series_uids(folder)
    if not series:
        raise UserError(f"cannot read volume {folder}: no DICOM files in the folder")
    if len(series) > 1:
        listed = ", ".join(f"{uid or '(no uid)'} ({len(files)} files, e.g. {files[0].name})"
                           for uid, files in list(series.items())[:3])
        raise UserError(f"cannot read volume {folder}: the folder holds {len(series)} DICOM series: {listed}; "
                        "put each series in a folder of its own")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = LoadImage(reader=PydicomReader(), image_only=True)(str(folder))
    data = np.asarray(img, dtype=np.float32)
    if data.ndim == 2:
        data = data[..., None]
    spacing = img.meta.get("spacing")
    first = pydicom.dcmread(next(iter(series.values()))[0], stop_before_pixels=True)
    hu = str(first.get("Modality", "")).upper() == "CT"
    meta = VolumeMeta(str(folder), "dicom-series", tuple(reversed(data.shape)),
                      tuple(float(s) for s in reversed(np.asarray(spacing).tolist())) if spacing is not None else None,
                      np.asarray(img.affine, dtype=np.float64), "HU" if hu else "", str(data.dtype))
    return np.ascontiguousarray(data.transpose(2, 1, 0)), meta


def _read_file(path: Path) -> tuple[np.ndarray, VolumeMeta]:
    """A NIfTI file, or a multi-frame DICOM or multi-page TIFF (frames as slices), grey only."""
    a, meta = read_stored(path)
    if meta.channels != 1:
        raise UserError(f"cannot read volume {path}: {meta.channels}-channel frames; a volume is grey")
    spacing = meta.spacing
    if spacing is not None and len(spacing) == 2:
        spacing = (1.0, *spacing)  # a DICOM file of frames does not say their distance: 1
    return (np.ascontiguousarray(a[..., 0], dtype=np.float32),
            VolumeMeta(str(path), meta.format, a.shape[:3], spacing, meta.affine, meta.units, meta.dtype))


def read_volume(path: str | Path) -> tuple[np.ndarray, VolumeMeta]:
    """A NIfTI file, a folder holding one DICOM series, or a file of frames -> float32 (D, H, W) and its
    VolumeMeta. Failures are one-line UserErrors naming the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"cannot read volume {path}: not found")
    try:
        return _read_series(path) if path.is_dir() else _read_file(path)
    except (UserError, MemoryError):
        raise
    except Exception as exc:  # any decoder failure means the file is not a readable volume
        raise UserError(f"cannot read volume {path}: {one_line(exc)}") from exc


def parse_spacing(value) -> tuple[float, float, float] | None:
    """--spacing: one number (isotropic) or three (D, H, W, in the order the data summary prints) in mm, as a
    string "1,1,2" or a list; None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    try:
        numbers = [float(v) for v in items]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) not in (1, 3) or not all(np.isfinite(n) and n > 0 for n in numbers):
        raise UserError(f"--spacing {value!r}: expected one positive number of mm (isotropic voxels) or three "
                        "(D,H,W), e.g. 1 or 3,1,1")
    return tuple(numbers * 3 if len(numbers) == 1 else numbers)


def resample(volume: np.ndarray, spacing: tuple[float, float, float] | None, target: tuple[float, float, float],
             labels: bool = False, where: str = "") -> np.ndarray:
    """(D, H, W) on voxels of `spacing` mm -> the same extent on voxels of `target` mm (MONAI's Spacing:
    trilinear, or nearest for label maps); refused when the file gives no spacing."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    if spacing is None:
        raise UserError(f"--spacing: {where or 'a volume'} gives no voxel spacing to resample from")
    if tuple(spacing) == tuple(target):
        return volume
    grid = MetaTensor(torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None],
                      affine=torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64)))
    out = Spacing(pixdim=target, mode="nearest" if labels else "bilinear")(grid)
    return np.asarray(out[0], dtype=np.float32)


def write_label_map(path: str | Path, labels: np.ndarray, like: str | Path | VolumeMeta) -> Path:
    """Write labels (D, H, W) as a NIfTI file at `path` on the grid of the image they were predicted from:
    `like`, a NIfTI file (the same affine and header: its qform/sform codes, units, descriptions) or the
    VolumeMeta of any volume (its affine, e.g. a DICOM series'; identity scaled by the spacing when it has
    none). The array goes back in the file's (i, j, k) order, stored as uint8 (up to 255 labels) or uint16."""
    import nibabel as nib

    voxels = np.asarray(labels).transpose(2, 1, 0)
    dtype = np.uint8 if voxels.max(initial=0) < 256 else np.uint16
    if isinstance(like, VolumeMeta) and like.format != "nifti":
        shape, header = tuple(reversed(like.shape)), None
        affine = like.affine if like.affine is not None else np.diag([*reversed(like.spacing or (1, 1, 1)), 1.0])
    else:
        reference = nib.load(str(like.path if isinstance(like, VolumeMeta) else like))
        shape, affine, header = tuple(int(s) for s in reference.shape[:3]), reference.affine, reference.header.copy()
        header.set_data_dtype(dtype)
    if voxels.shape != shape:
        raise UserError(f"labels of shape {tuple(np.shape(labels))} (D, H, W) do not lie on the grid of "
                        f"{like.path if isinstance(like, VolumeMeta) else like} ({' x '.join(map(str, reversed(shape)))})")
    image = nib.Nifti1Image(voxels.astype(dtype), affine, header)
    image.header.set_slope_inter(1, 0)
    gzipped = ".nii.gz" if str(path).endswith(".gz") else ".nii"  # nibabel compresses by the name

    def write(tmp: str) -> None:
        nib.save(image, tmp + gzipped)
        os.replace(tmp + gzipped, tmp)
    atomic_write(path, write)
    return Path(path)
