"""Point annotations as a segmentation dataset: discs around each centre, or SC-CNN's proximity maps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ..data.images import prepare_image, read_image
from ..data.points import load_crchistophenotypes, load_points_csv
from ..data.segmentation import SegImage, SegInfo, random_splits
from ..errors import UserError


def disc_mask(shape: tuple[int, int], centres: np.ndarray, radius: float) -> np.ndarray:
    """(H, W) int64 mask: 1 within `radius` of any centre (N, 2) 0-based (row, col), else 0."""
    mask = np.zeros(shape, dtype=np.int64)
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    inside = dy ** 2 + dx ** 2 <= radius ** 2
    for y, x in np.round(centres).astype(int):
        ys, xs = y + dy[inside], x + dx[inside]
        keep = (ys >= 0) & (ys < shape[0]) & (xs >= 0) & (xs < shape[1])
        mask[ys[keep], xs[keep]] = 1
    return mask


def point_parts(cfg) -> tuple[str, dict]:
    """(name, {"train", "val", "test": [PointImage]}) of cfg's point data: --dataset crchistophenotypes (train =
    60 of its training images, val = the other 10, test = split.csv's 10 validation images), or --points CSV
    (image,x,y[,class], 1-based) with --images DIR, split by image at random (seeded). Every choice is made on
    val; test is only scored."""
    if cfg.dataset == "crchistophenotypes":
        return "crchistophenotypes", load_crchistophenotypes(cfg.data_root, mpp=cfg.mpp)
    if not cfg.images:
        raise UserError("--points CSV needs --images DIR (the folder the CSV's image column names files in)")
    images = load_points_csv(cfg.points, cfg.images, mpp=cfg.mpp)
    parts = {"train": [], "val": [], "test": []}
    for image, split in zip(images, random_splits(len(images), cfg.val_fraction, cfg.test_fraction, cfg.seed)):
        parts[split].append(image)
    return Path(cfg.points).stem, parts


def proximity_map(shape: tuple[int, int], centres: np.ndarray, radius: float) -> np.ndarray:
    """(H, W) float32: 1 / (1 + d^2 / 2) where d <= radius is the distance to the nearest centre (N, 2)
    0-based (row, col) (rounded to pixels), else 0 (Sirinukunwattana et al. 2016's proximity target)."""
    if len(centres) == 0:
        return np.zeros(shape, np.float32)
    seeds = np.ones(shape, dtype=bool)
    rows, cols = np.clip(np.round(centres).astype(int), 0, np.array(shape) - 1).T
    seeds[rows, cols] = False
    d = ndimage.distance_transform_edt(seeds)
    return np.where(d <= radius, 1 / (1 + d ** 2 / 2), 0).astype(np.float32)


def point_segmentation(cfg):
    """Point annotations as a segmentation dataset: discs of cfg.radius around each centre, class "centre"
    (with cfg.target "proximity", also each image's proximity map as its soft target).
    Returns (SegInfo, {"train", "val", "test": [SegImage with .points]})."""
    name, parts = point_parts(cfg)
    radius, channels = cfg.radius, cfg.channels
    splits: dict[str, list[SegImage]] = {}
    for split, images in parts.items():
        splits[split] = []
        for p in images:
            array = read_image(p.path)
            image = prepare_image(array, channels or 3, array.shape[:2]).numpy()
            centres = p.pixels()
            target = proximity_map(array.shape[:2], centres, radius) if cfg.target == "proximity" else None
            splits[split].append(SegImage(p.name, image, disc_mask(array.shape[:2], centres, radius), points=centres,
                                          target=target))
    count = sum(len(p.points) for images in parts.values() for p in images)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in parts.items())
    shape = "proximity maps (1/(1+d^2/2))" if cfg.target == "proximity" else "discs"
    info = SegInfo(name, ["background", "centre"], channels or 3,
                   [f"{name} detection: {shape} of radius {radius} px around {count} centres; images: {sizes}"])
    return info, splits
