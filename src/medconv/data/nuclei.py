"""CRCHistoPhenotypes nuclei as a classification dataset: one RGB patch per classified centroid."""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .medmnist import data_root
from .types import DatasetInfo, ImageSet

NAME = "crchistophenotypes"
CLASSES = ("epithelial", "fibroblast", "inflammatory", "others")
VAL_EVERY = 7  # val = every 7th of the 70 train images sorted by number: 10 images


def nuclei_folder(root: str | os.PathLike | None = None) -> Path:
    """ROOT/crchistophenotypes (ROOT as `data_root`), or ROOT itself when it holds the CSVs."""
    base = data_root(root)
    return base if (base / "classification_centroids.csv").is_file() else base / NAME


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise UserError(f"{path} not found: the CRCHistoPhenotypes data is expected in DATA_ROOT/{NAME}/ "
                        f"(set --data-root or MEDCONV_DATA)")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing:
        raise UserError(f"{path}: expected columns {','.join(columns)} and at least one row")
    return rows


def _read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 pixels of an image file."""
    from PIL import Image

    if not path.is_file():
        raise UserError(f"{path} not found: the CRCHistoPhenotypes images are expected in DATA_ROOT/{NAME}/images/")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except OSError as exc:
        raise UserError(f"cannot read image {path}: {' '.join(str(exc).split())}") from None


def pixel_index(coord: np.ndarray, length: int) -> np.ndarray:
    """MATLAB 1-based coordinates -> nearest 0-based pixel index (halves round up), clipped to 0..length-1."""
    return np.clip(np.floor(np.asarray(coord, dtype=np.float64) - 0.5), 0, length - 1).astype(np.int64)


def extract_patches(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch: int) -> np.ndarray:
    """Patches (N, patch, patch, C) of image (H, W, C) centred on 0-based pixels (rows, cols).

    Pixels outside the image are mirrored with np.pad(mode="reflect") (edge pixel not repeated).
    """
    half = patch // 2
    padded = np.pad(image, ((half, half), (half, half), (0, 0)), mode="reflect")
    offsets = np.arange(patch)
    return padded[rows[:, None, None] + offsets[None, :, None], cols[:, None, None] + offsets[None, None, :]]


def neighbour_offsets(radius: int) -> list[tuple[int, int]]:
    """Integer offsets (dy, dx) of the pixels within `radius` px of a centre (dy^2 + dx^2 <= radius^2), the
    centre (0, 0) first: where the neighbouring patches of a nucleus are centred."""
    span = range(-radius, radius + 1)
    return sorted(((dy, dx) for dy in span for dx in span if dy * dy + dx * dx <= radius * radius),
                  key=lambda o: (o[0] ** 2 + o[1] ** 2, o))


def shifted_patches(root: str | os.PathLike | None, paths: list[str], patch: int,
                    offsets: list[tuple[int, int]]) -> list[np.ndarray]:
    """For each offset (dy, dx), the patches (N, 3, patch, patch) uint8 of the nuclei named by `paths`
    ("imgN.png@x,y", as load_nuclei names them) centred that far from their centroids (the centre kept inside
    the image; borders mirrored as load_nuclei does). Each image is read once."""
    folder = nuclei_folder(root)
    out = [np.zeros((len(paths), 3, patch, patch), np.uint8) for _ in offsets]
    by_image: dict[str, list[tuple[int, float, float]]] = {}
    for i, path in enumerate(paths):
        name, _, xy = path.partition("@")
        x, y = (float(v) for v in xy.split(","))
        by_image.setdefault(name, []).append((i, x, y))
    for name, rows in by_image.items():
        image = _read_rgb(folder / "images" / name)
        h, w = image.shape[:2]
        index = np.array([i for i, _, _ in rows])
        ys, xs = pixel_index(np.array([y for _, _, y in rows]), h), pixel_index(np.array([x for _, x, _ in rows]), w)
        for k, (dy, dx) in enumerate(offsets):
            cut = extract_patches(image, np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1), patch)
            out[k][index] = cut.transpose(0, 3, 1, 2)
    return out


def _number(name: str) -> int:
    """img12 -> 12, so images sort by number rather than as text."""
    return int("".join(ch for ch in name if ch.isdigit()) or 0)


def split_images(folder: Path, val_images: list[str] | None = None) -> dict[str, list[str]]:
    """Image names per split: test = split.csv's validation images, val = held-out train images, train = the rest."""
    rows = _read_csv(folder / "split.csv", ("image", "split"))
    train = sorted((r["image"] for r in rows if r["split"] == "train"), key=_number)
    test = sorted((r["image"] for r in rows if r["split"] == "validation"), key=_number)
    if val_images is None:
        val = train[VAL_EVERY - 1::VAL_EVERY]
    else:
        unknown = sorted(set(val_images) - set(train))
        if unknown:
            raise UserError(f"val_images {', '.join(unknown)}: not train images of {folder / 'split.csv'}")
        val = sorted(set(val_images), key=_number)
    return {"train": [n for n in train if n not in val], "val": val, "test": test}


def load_nuclei(root: str | os.PathLike | None = None, patch: int = 27,
                val_images: list[str] | None = None) -> tuple[DatasetInfo, dict[str, ImageSet]]:
    """CRCHistoPhenotypes nucleus-type classification, split by image.

    Returns info and {"train", "val", "test": ImageSet}: images (N, 3, patch, patch) uint8, one per
    row of classification_centroids.csv, centred on its centroid (1-based x = column, y = row,
    rounded to the nearest pixel) and mirror-padded with np.pad(mode="reflect") at image borders;
    labels (N, 1) int64 indexing CLASSES; paths "imgN.png@x,y" with x, y as written in the CSV.
    test = the 10 images split.csv marks validation; val = `val_images` (default: every 7th train
    image by number) for model selection; train = the other train images.
    """
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 5 or patch % 2 == 0:
        raise UserError(f"--patch {patch!r}: the nucleus patch side must be an odd number of pixels >= 5")
    folder = nuclei_folder(root)
    if not folder.is_dir():
        raise UserError(f"{folder} not found: put the CRCHistoPhenotypes folder (images/, "
                        f"classification_centroids.csv, split.csv) at DATA_ROOT/{NAME} (set --data-root or MEDCONV_DATA)")
    splits = split_images(folder, val_images)
    centroids = _read_csv(folder / "classification_centroids.csv", ("image", "x", "y", "class"))
    by_image: dict[str, list[dict]] = {}
    for r in centroids:
        if r["class"] not in CLASSES:
            raise UserError(f"{folder / 'classification_centroids.csv'}: unknown class {r['class']!r} "
                            f"(expected one of {', '.join(CLASSES)})")
        by_image.setdefault(r["image"], []).append(r)
    sets = {}
    for split, names in splits.items():
        patches, labels, paths = [], [], []
        for name in names:
            rows = by_image.get(name, [])
            if not rows:
                continue
            image = _read_rgb(folder / "images" / f"{name}.png")
            h, w = image.shape[:2]
            xs = np.array([float(r["x"]) for r in rows])
            ys = np.array([float(r["y"]) for r in rows])
            patches.append(extract_patches(image, pixel_index(ys, h), pixel_index(xs, w), patch))
            labels.extend(CLASSES.index(r["class"]) for r in rows)
            paths.extend(f"{name}.png@{r['x']},{r['y']}" for r in rows)
        array = np.concatenate(patches) if patches else np.zeros((0, patch, patch, 3), np.uint8)
        sets[split] = ImageSet(torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2))),
                               torch.tensor(labels, dtype=torch.int64).reshape(-1, 1), paths)
    note = (f"CRCHistoPhenotypes: test = the {len(splits['test'])} validation images of split.csv; "
            f"val = {len(splits['val'])} train images held out for model selection: {', '.join(splits['val'])}; "
            f"patches {patch}x{patch}, mirror-padded (reflect)")
    info = DatasetInfo(name=NAME, task="multi-class", classes=list(CLASSES), channels=3, size=(patch, patch),
                       source=str(folder), notes=[note])
    return info, sets


if __name__ == "__main__":  # timing: python -m medconv.data.nuclei [ROOT]
    import sys

    start = time.perf_counter()
    info, sets = load_nuclei(sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"{time.perf_counter() - start:.2f} s; {info.notes[0]}")
    for split, s in sets.items():
        counts = torch.bincount(s.labels[:, 0], minlength=len(CLASSES)).tolist()
        print(split, len(s), dict(zip(CLASSES, counts)))
