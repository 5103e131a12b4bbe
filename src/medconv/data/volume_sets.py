"""Volumes for classification from a CSV manifest ``path,label[,split][,subject]`` whose paths are NIfTI files or
folders holding one DICOM series: read (data.volumes), scaled to [0, 1] (CT through a window in Hounsfield units,
other volumes by their own 0.5th-99.5th percentiles, MONAI's ScaleIntensityRangePercentiles), brought to one shape
(MONAI's Resize or ResizeWithPadOrCrop) and held as float32 (N, 1, D, H, W). Splits per subject (data.splits)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from medconv.data.images import FULL_HU, windowed
from medconv.data.medmnist import data_root as resolve_root
from medconv.data.medmnist import load_medmnist
from medconv.data.readers import suffix
from medconv.data.splits import Row, assign_splits, class_counts
from medconv.data.summary import split_lines
from medconv.data.types import DatasetInfo, ImageSet
from medconv.data.volumes import VolumeMeta, read_volume, resample
from medconv.errors import UserError

PERCENTILES = (0.5, 99.5)
VOLUME_FITS = ("resize", "pad")


def is_volume(path: Path) -> bool:
    """A folder (a DICOM series) or a NIfTI file of more than one slice."""
    if path.is_dir():
        return True
    if suffix(path) not in (".nii", ".nii.gz"):
        return False
    import nibabel as nib

    shape = nib.load(str(path)).shape
    return len(shape) >= 3 and shape[2] > 1


def to_unit(volume: np.ndarray, meta: VolumeMeta, window: tuple[float, float] | None) -> tuple[np.ndarray, str]:
    """(D, H, W) stored values -> [0, 1] and how: CT by a window (or -1024..3071 HU), others by percentiles."""
    if window is not None or meta.units == "HU":
        unit, how = windowed(volume, window or FULL_HU)
        return unit.astype(np.float32), how
    from monai.transforms import ScaleIntensityRangePercentiles

    scale = ScaleIntensityRangePercentiles(*PERCENTILES, b_min=0.0, b_max=1.0, clip=True)
    return np.asarray(scale(volume[None]))[0].astype(np.float32), \
        f"each volume by its {PERCENTILES[0]:g}-{PERCENTILES[1]:g} percentiles"


def fit_volume(volume: np.ndarray, shape: tuple[int, int, int], mode: str) -> np.ndarray:
    """(D, H, W) -> `shape`: resize (trilinear, MONAI's Resize) or pad (zero-pad or crop around the centre)."""
    if volume.shape == tuple(shape):
        return volume
    from monai.transforms import Resize, ResizeWithPadOrCrop

    if mode not in VOLUME_FITS:
        raise UserError(f"--resize-mode {mode}: volumes are brought to --size by {' or '.join(VOLUME_FITS)}")
    fit = Resize(shape, mode="trilinear") if mode == "resize" else ResizeWithPadOrCrop(shape)
    return np.asarray(fit(volume[None]))[0].astype(np.float32)


def read_resampled(path: Path, spacing: tuple[float, float, float] | None) -> tuple[np.ndarray, VolumeMeta]:
    """A volume (D, H, W) as stored, resampled to `spacing` mm when given, and its file's VolumeMeta."""
    volume, meta = read_volume(path)
    return (volume if spacing is None else resample(volume, meta.spacing, spacing, where=str(path))), meta


def volumes_like_training(paths: Sequence[Path], shape: tuple[int, int, int], fit_mode: str,
                          window: tuple[float, float] | None,
                          spacing: tuple[float, float, float] | None) -> torch.Tensor:
    """Volume files made into a run's input as its training volumes were: resampled, scaled to [0, 1], brought
    to `shape`: float32 (N, 1, D, H, W)."""
    out = []
    for path in paths:
        volume, meta = read_resampled(Path(path), spacing)
        out.append(torch.from_numpy(fit_volume(to_unit(volume, meta, window)[0], shape, fit_mode)))
    return torch.stack(out)[:, None]


def unlabelled_volumes(source: str, shape: tuple[int, int, int], data_root: str | None,
                       limit: int = 2000) -> tuple[torch.Tensor, str]:
    """Up to `limit` volumes of a source domain, labels unused, as float32 (N, 1, D, H, W) in [0, 1] at `shape`
    (MONAI's Resize): msd_hippocampus (its MRIs), a MedMNIST 3D flag (its training split), or a folder of NIfTI
    files. Returns them and a description."""
    if source.lower() in ("msd_hippocampus", "hippocampus"):
        base = resolve_root(data_root)
        folder = base / "msd_hippocampus" / "imagesTr" if (base / "msd_hippocampus").is_dir() else base / "imagesTr"
    elif Path(source).is_dir():
        folder = Path(source)
    else:
        _, sets = load_medmnist(source, size=shape[0], root=data_root)
        images = sets["train"].images[:limit]
        if images.ndim != 5 or tuple(images.shape[2:]) != tuple(shape):
            raise UserError(f"--pretrain-data {source}: its images are {tuple(images.shape[1:])}, not volumes of the "
                            f"network's input {'x'.join(map(str, shape))}")
        return images.float() / 255.0, f"{len(images)} training volumes of {source}"
    files = sorted(f for f in folder.glob("*.nii*") if not f.name.startswith("."))[:limit]
    if not files:
        raise UserError(f"--pretrain-data {source}: no NIfTI volumes in {folder}")
    volumes = []
    for f in files:
        volume, meta = read_volume(f)
        volumes.append(torch.from_numpy(fit_volume(to_unit(volume, meta, None)[0], shape, "resize")))
    return torch.stack(volumes)[:, None], f"{len(files)} volumes of {source} resized to {'x'.join(map(str, shape))}"


def load_volume_set(rows: Sequence[Row], classes: list[str], name: str, source: str, side: int | None,
                    fit_mode: str, window: tuple[float, float] | None, val_fraction: float, test_fraction: float,
                    seed: int, spacing: tuple[float, float, float] | None = None
                    ) -> tuple[DatasetInfo, dict[str, ImageSet]]:
    """Volumes of a manifest's rows -> (DatasetInfo, {split: ImageSet of float32 (N, 1, D, H, W)}), resampled
    to `spacing` (mm, D x H x W) first when given; differing shapes are refused unless `side` (--size) gives one."""
    splits = assign_splits(rows, val_fraction, test_fraction, seed, source)
    read = []
    for row in rows:
        try:
            read.append(read_resampled(row.path, spacing))
        except UserError as exc:
            raise UserError(f"{row.where}: {exc}") if row.where else exc from None
    shapes = Counter(v.shape for v, _ in read)
    if side is None and len(shapes) > 1:
        listed = ", ".join(f"{'x'.join(map(str, s))} ({c})" for s, c in shapes.most_common(4))
        raise UserError(f"{source}: volumes differ in shape: {listed}; choose the network input with --size N (an "
                        "N x N x N cube) and --resize-mode resize or pad")
    shape = (side,) * 3 if side else next(iter(shapes))
    volumes, hows = [], Counter()
    for volume, meta in read:
        unit, how = to_unit(volume, meta, window)
        volumes.append(torch.from_numpy(fit_volume(unit, shape, fit_mode)))
        hows[how] += 1
    sets = {split: ImageSet(torch.stack([volumes[i] for i in idx])[:, None],
                            torch.tensor([[rows[i].label] for i in idx], dtype=torch.int64),
                            [str(rows[i].path) for i in idx]) for split, idx in splits.items()}
    spacings = Counter(tuple(round(s, 3) for s in m.spacing) if m.spacing else None for _, m in read)
    counts = class_counts(rows, splits, len(classes))
    summary = [f"volumes: {len(rows)}, native shape " + ", ".join(f"{'x'.join(map(str, s))} ({c})" for s, c in
                                                                 shapes.most_common(4))
               + f" -> network input {'x'.join(map(str, shape))}"
               + (f" (by --resize-mode {fit_mode})" if set(shapes) != {shape} else " (native)"),
               "voxel spacing (mm, D x H x W): " + ", ".join(f"{'x'.join(map(str, s)) if s else 'not given'} ({c})"
                                                           for s, c in spacings.most_common(4))
               + (f" -> resampled to {'x'.join(f'{s:g}' for s in spacing)} (MONAI's Spacing)" if spacing else ""),
               "values -> [0, 1] by " + "; ".join(f"{k} ({c})" for k, c in hows.most_common())]
    info = DatasetInfo(name=name, task="binary-class" if len(classes) == 2 else "multi-class", classes=list(classes),
                       channels=1, size=shape, source=source, summary=summary + split_lines(list(classes), counts))
    return info, sets
