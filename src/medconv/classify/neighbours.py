"""The neighbouring ensemble predictor (NEP) of Sirinukunwattana et al. 2016 for nucleus-type classifiers: a
nucleus's class probabilities are the mean of the classifier's over the patches centred on every pixel within a
radius of its centroid, so that a centroid a few pixels off (annotation, detection) is read from all sides."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..data.datasets import fit_mode, resized
from ..data.nuclei import NAME, neighbour_offsets, shifted_patches
from ..data.types import ImageSet
from ..errors import UserError
from .predict import predict_scores


def check_neighbours(cfg: TrainConfig, radius: int) -> None:
    """Refuse --neighbours for a run that is not a CRCHistoPhenotypes nucleus classifier, or a negative radius."""
    if radius < 0:
        raise UserError(f"--neighbours {radius}: the radius is a number of pixels >= 0")
    if radius and cfg.dataset != NAME:
        raise UserError(f"--neighbours {radius}: the neighbouring ensemble reads nuclei around their centroids in "
                        f"the source images, so it is for --dataset {NAME} runs; this run's dataset is "
                        f"{cfg.dataset or 'image files'}")


def neighbourhood_scores(model: nn.Module, meta: dict, cfg: TrainConfig, split: ImageSet, radius: int,
                         device: torch.device | str = "cpu") -> np.ndarray:
    """Probabilities (N, K) of the nuclei of `split` (paths "imgN.png@x,y"): the mean of `model`'s over the
    patches centred within `radius` px of each centroid (radius 0: the centred patch alone), each patch cut and
    resized as training's were. The radius is checked by the caller (check_neighbours)."""
    offsets, total = neighbour_offsets(radius), None
    for patches in shifted_patches(cfg.data_root, split.paths, cfg.patch, offsets):
        views = ImageSet(torch.from_numpy(patches), split.labels, split.paths)
        if cfg.resize and cfg.resize != cfg.patch:
            views = resized(views, cfg.resize, fit_mode(cfg.resize_mode, "resize"))
        scores = predict_scores(model, views.images, meta["mean"], meta["std"], meta["task"], device)
        total = scores if total is None else total + scores
    return total / len(offsets)
