"""The images (and masks, or point annotations) a segmentation or detection run trains and is scored on."""
from __future__ import annotations

import numpy as np

from ..data.images import parse_window
from ..data.segmentation import SegImage, SegInfo, load_segmentation
from ..detect.targets import point_segmentation
from .config import SegmentConfig


def load_data(cfg: SegmentConfig) -> tuple[SegInfo, dict[str, list[SegImage]]]:
    if cfg.dataset == "crchistophenotypes" or cfg.points:  # point annotations: discs around the centres
        return point_segmentation(cfg)
    return load_segmentation(manifest=cfg.manifest, images=cfg.images, masks=cfg.masks, roi=cfg.roi,
                             dataset=cfg.dataset, data_root=cfg.data_root, value_map=cfg.value_map,
                             classes=cfg.classes, channels=cfg.channels, val_fraction=cfg.val_fraction,
                             test_fraction=cfg.test_fraction, seed=cfg.seed, mask_type=cfg.mask_type,
                             window=parse_window(cfg.window))


def pixel_stats(images: list[SegImage]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over all pixels of the images."""
    stacked = np.concatenate([im.image.reshape(im.image.shape[0], -1) for im in images], axis=1)
    return stacked.mean(1).tolist(), np.maximum(stacked.std(1), 1e-6).tolist()
