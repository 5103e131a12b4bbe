"""A finished detector's maps and its false positives on images (hard negatives for a second training)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.segmentation import SegImage
from ..segment.evaluate import load_segmenter
from ..segment.maps import MapMaker
from .matching import match
from .peaks import detect, read_params


def centre_maps(maker, images: list[SegImage]) -> list[np.ndarray]:
    """The 'centre' probability map (H, W) of each image."""
    return [maker(torch.from_numpy(im.image))[1].numpy() for im in images]


def detection_maps(run_dir: str | Path, params: dict, device: str = "cpu", tta: str | None = None):
    """(meta, MapMaker) of a detector run, with its chosen test-time augmentation unless `tta` is given."""
    model, meta = load_segmenter(run_dir, device=device)
    return meta, MapMaker(model, meta, tta=tta or params.get("tta", "none"), device=device)


def false_positives(run_dir: str | Path, images: list[SegImage], tolerance: float, device: str = "cpu") -> np.ndarray:
    """Hard negatives (M, 3) (image index, row, col): the detections of a finished detector run on `images`
    that match none of their points within `tolerance` px (Ciresan et al. 2013 retrained on these)."""
    params = read_params(Path(run_dir))
    maker, rows = detection_maps(run_dir, params, device)[1], []
    for i, (prob, im) in enumerate(zip(centre_maps(maker, images), images)):
        found = detect(prob, params)[:, :2]
        matched = {k for k, _ in match(found, im.points, tolerance)[0]}
        for k in sorted(set(range(len(found))) - matched):
            y, x = np.clip(np.round(found[k]).astype(int), 0, np.array(im.image.shape[1:]) - 1)
            rows.append((i, y, x))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)
