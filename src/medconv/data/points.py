"""Point labels (nucleus or mitosis centroids) from CSV or .mat files; the CRCHistoPhenotypes splits.

Points are (x, y) in the 1-based convention of MATLAB annotations (x = column, y = row; pixel k
spans k - 0.5..k + 0.5); `to_pixel` gives the 0-based (row, col) of arrays and `medconv.detect`.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .nuclei import _number, nuclei_folder, split_images

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MAT_VARIABLE = "detection"  # the (N, 2) centroids in every CRCHistoPhenotypes .mat file
EDGE_MARGIN = 0.5  # px a centroid may lie beyond the image edge (the dataset has a few at x = 0.15..0.45)


@dataclass
class PointImage:
    """One image and its annotated points: (N, 2) float64 (x, y), 1-based; `classes` one per point or None."""

    name: str
    path: Path
    points: np.ndarray
    classes: list[str] | None = None
    mpp: float | None = None  # micrometres per pixel, to turn a tolerance in um into pixels

    def pixels(self) -> np.ndarray:
        """The points as (N, 2) 0-based (row, col)."""
        return to_pixel(self.points)


def to_pixel(points: np.ndarray, one_based: bool = True) -> np.ndarray:
    """(N, 2) (x, y) -> (N, 2) float64 0-based (row, col); `one_based` says how `points` count."""
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)[:, ::-1] - (1.0 if one_based else 0.0)


def from_pixel(pixels: np.ndarray, one_based: bool = True) -> np.ndarray:
    """(N, 2) 0-based (row, col) -> (N, 2) float64 (x, y), 1-based unless `one_based` is False."""
    return np.asarray(pixels, dtype=np.float64).reshape(-1, 2)[:, ::-1] + (1.0 if one_based else 0.0)


def _stem(value: str | None) -> str:
    """The image name without an image extension."""
    value = value or ""
    return value[: -len(Path(value).suffix)] if Path(value).suffix.lower() in IMAGE_EXTS else value


def find_image(images_dir: Path, name: str, source: str | os.PathLike) -> Path:
    """The file of image `name` in `images_dir`, with or without its extension; `source` names the asker."""
    for path in [Path(images_dir) / name] + [Path(images_dir) / f"{name}{ext}" for ext in IMAGE_EXTS]:
        if path.is_file():
            return path
    raise UserError(f"{source}: image {name!r} not found in {images_dir} (tried extensions {' '.join(IMAGE_EXTS)})")


def _point_image(name: str, images_dir: Path, points: np.ndarray, classes: list[str] | None,
                 mpp: float | None, source: str | os.PathLike) -> PointImage:
    """A PointImage, after checking its image exists and the 1-based points lie on it (within EDGE_MARGIN)."""
    from PIL import Image

    path = find_image(images_dir, name, source)
    try:
        with Image.open(path) as img:
            width, height = img.size
    except OSError as exc:
        raise UserError(f"cannot read image {path}: {' '.join(str(exc).split())}") from None
    lo, hi = 0.5 - EDGE_MARGIN, np.array([width, height]) + 0.5 + EDGE_MARGIN
    bad = ~np.isfinite(points).all(axis=1) | (points < lo).any(axis=1) | (points > hi).any(axis=1)
    if bad.any():
        x, y = points[np.argmax(bad)]
        raise UserError(f"{source}: centroid (x={x:g}, y={y:g}) lies outside {path.name} ({width}x{height}): "
                        f"expected 1-based x in [{lo:g}, {hi[0]:g}], y in [{lo:g}, {hi[1]:g}]")
    return PointImage(name, path, points, classes, mpp)


def _check_mpp(mpp: float | None) -> None:
    if mpp is not None and not (isinstance(mpp, (int, float)) and mpp > 0):
        raise UserError(f"--mpp {mpp!r}: micrometres per pixel must be a positive number")


def load_points_csv(csv_path: str | os.PathLike, images_dir: str | os.PathLike, one_based: bool = True,
                    mpp: float | None = None) -> list[PointImage]:
    """Points per image from a CSV with columns image,x,y[,class], in order of first appearance.

    The image column may omit the extension; with `one_based=False` the file's x, y count from 0
    and are shifted to the 1-based convention of PointImage.
    """
    _check_mpp(mpp)
    csv_path, images_dir = Path(csv_path), Path(images_dir)
    if not csv_path.is_file():
        raise UserError(f"{csv_path} not found: expected a CSV with columns image,x,y[,class]")
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if not {"image", "x", "y"} <= set(fields):
            raise UserError(f"{csv_path}: expected columns image,x,y[,class], found {','.join(fields) or 'none'}")
        typed = "class" in fields
        grouped: dict[str, tuple[list, list]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                xy = (float(row["x"]), float(row["y"]))
            except (TypeError, ValueError):
                raise UserError(f"{csv_path}:{line}: x, y must be numbers, got {row['x']!r}, {row['y']!r}") from None
            points, classes = grouped.setdefault(_stem(row["image"]), ([], []))
            points.append(xy)
            classes.append(row["class"] if typed else None)
    shift = 0.0 if one_based else 1.0
    return [_point_image(name, images_dir, np.asarray(points, dtype=np.float64).reshape(-1, 2) + shift,
                         classes if typed else None, mpp, csv_path) for name, (points, classes) in grouped.items()]


def read_mat_points(path: Path, variable: str = MAT_VARIABLE) -> np.ndarray:
    """The (N, 2) float64 array `variable` of a MATLAB file (empty arrays of any shape give (0, 2))."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    if not path.is_file():
        raise UserError(f"{path} not found: expected a .mat file with the (N, 2) centroids in {variable!r}")
    try:
        content = loadmat(path)
    except (MatReadError, ValueError, TypeError, OSError) as exc:
        raise UserError(f"cannot read {path} as a MATLAB file: {' '.join(str(exc).split())}") from None
    if variable not in content:
        found = ", ".join(k for k in content if not k.startswith("__")) or "none"
        raise UserError(f"{path}: no variable {variable!r} (found {found}); expected the (N, 2) centroids there")
    array = np.asarray(content[variable], dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 2))
    if array.ndim != 2 or array.shape[1] != 2:
        raise UserError(f"{path}: {variable!r} has shape {array.shape}, expected (N, 2) centroids (x, y)")
    return array


def load_points_mat(mat_dir: str | os.PathLike, images_dir: str | os.PathLike, classes: bool = False,
                    mpp: float | None = None, variable: str = MAT_VARIABLE) -> list[PointImage]:
    """Points from the CRCHistoPhenotypes layout mat_dir/imgN/imgN_detection.mat, images sorted by number.

    With `classes`, the points are those of the class files imgN_<class>.mat (classes in
    alphabetical order; the detection file also holds unclassified nuclei), each with its class.
    """
    _check_mpp(mpp)
    mat_dir, images_dir = Path(mat_dir), Path(images_dir)
    if not mat_dir.is_dir():
        raise UserError(f"{mat_dir} not found: expected folders imgN/ holding imgN_detection.mat")
    images = []
    for folder in sorted((p for p in mat_dir.iterdir() if p.is_dir()), key=lambda p: _number(p.name)):
        name, labels = folder.name, None
        if classes:
            files = sorted(p for p in folder.glob(f"{name}_*.mat") if p.stem != f"{name}_detection")
            if not files:
                raise UserError(f"{folder}: no class files {name}_<class>.mat for classes=True")
            parts = [read_mat_points(f, variable) for f in files]
            labels = [f.stem[len(name) + 1:] for f, p in zip(files, parts) for _ in range(len(p))]
            points = np.concatenate(parts)
        else:
            points = read_mat_points(folder / f"{name}_detection.mat", variable)
        images.append(_point_image(name, images_dir, points, labels, mpp, folder))
    return images


def load_crchistophenotypes(data_root: str | os.PathLike | None = None, source: str = "csv",
                            classes: bool = False, mpp: float | None = None) -> dict[str, list[PointImage]]:
    """CRCHistoPhenotypes centroids, split by image as the nucleus-type patches are (data.nuclei.split_images):
    {"train": 60 of split.csv's 70 training images, "val": the other 10 (every 7th by number), held out to
    choose on (checkpoint, peak parameters, test-time augmentation), "test": the 10 split.csv calls validation,
    which no choice sees}.

    `source` "csv" reads detection_centroids.csv (classification_centroids.csv with `classes`),
    "mat" the mat/ folder; the folder is DATA_ROOT/crchistophenotypes (DATA_ROOT as `data_root`).
    An image without points in the source gets an empty (0, 2) array.
    """
    if source not in ("csv", "mat"):
        raise UserError(f"source {source!r}: expected 'csv' or 'mat'")
    folder = nuclei_folder(data_root)
    if not folder.is_dir():
        raise UserError(f"{folder} not found: put the CRCHistoPhenotypes folder (images/, mat/, *.csv, split.csv) "
                        f"at DATA_ROOT/crchistophenotypes (set --data-root or MEDCONV_DATA)")
    images_dir = folder / "images"
    if source == "csv":
        csv_name = "classification_centroids.csv" if classes else "detection_centroids.csv"
        loaded = load_points_csv(folder / csv_name, images_dir, mpp=mpp)
    else:
        loaded = load_points_mat(folder / "mat", images_dir, classes=classes, mpp=mpp)
    by_name = {image.name: image for image in loaded}
    parts = split_images(folder)

    def image(name: str) -> PointImage:
        empty = np.zeros((0, 2))
        return by_name.get(name) or _point_image(name, images_dir, empty, [] if classes else None, mpp, folder)

    return {split: [image(n) for n in names] for split, names in parts.items()}
