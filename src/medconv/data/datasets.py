"""Loading a classification dataset by config: MedMNIST, folders, manifests, nucleus patches, synthetic lesions."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .folders import load_image_folder, load_manifest
from .given import PYTHON, given_data
from .reading import Reading, is_lazy
from .images import LUMA, fit, parse_window
from .levels import relabelled
from .medmnist import load_medmnist
from .nuclei import load_nuclei
from .synthetic import load_synthetic
from .types import DatasetInfo, ImageSet
from .volumes import parse_spacing


def load_dataset(cfg, data: dict | None = None) -> tuple[DatasetInfo, dict[str, ImageSet]]:
    """The train/val/test ImageSets a TrainConfig names (or `data` given in Python: data.given), with its channels,
    taxonomy, --resize and `train_fraction` applied."""
    if data is not None:
        info, sets = given_data(data)
    elif cfg.dataset == PYTHON:
        raise UserError("this run was trained on data given in Python (medconv.train(cfg, out, data=...)); give the "
                        "data again, e.g. medconv.evaluate(run, data=...)")
    elif cfg.spacing is not None and not cfg.manifest:
        raise UserError("--spacing resamples volumes of a --manifest (NIfTI files, DICOM series); "
                        f"{cfg.dataset or cfg.images} gives no voxel spacing to resample from")
    elif cfg.images or cfg.manifest:
        reading = Reading(size=(cfg.size, cfg.size) if cfg.size else None, fit_mode=fit_mode(cfg.resize_mode, "size"),
                          window=parse_window(cfg.window), channels=cfg.channels, spacing=parse_spacing(cfg.spacing))
        common = dict(reading=reading, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed,
                      loading=cfg.loading)
        info, sets = load_manifest(cfg.manifest, **common) if cfg.manifest else load_image_folder(cfg.images, **common)
    elif cfg.dataset == "crchistophenotypes":
        info, sets = load_nuclei(cfg.data_root, patch=cfg.patch)
    elif cfg.dataset == "synthetic":
        info, sets = load_synthetic(size=cfg.size or 28)
    else:
        info, sets = load_medmnist(cfg.dataset, size=cfg.size or 28, root=cfg.data_root, download=cfg.download)
    if cfg.channels and cfg.channels != info.channels:
        if is_lazy(next(iter(sets.values())).images):
            raise UserError(f"channels {cfg.channels}: a torch Dataset's images are used as they are "
                            f"({info.channels} channel(s)); give them with {cfg.channels}")
        sets = {name: with_channels(s, cfg.channels) for name, s in sets.items()}
        info.notes.append(f"images converted from {info.channels} to {cfg.channels} channel(s)")
        info.channels = cfg.channels
    if cfg.taxonomy:  # leaves checked; labels mapped up with --train-level
        info, sets = relabelled(info, sets, cfg.taxonomy, cfg.train_level)
    elif cfg.train_level:
        raise UserError("--train-level needs --taxonomy TREE.yaml")
    if cfg.resize and (cfg.resize, cfg.resize) != tuple(info.size):
        if is_lazy(next(iter(sets.values())).images):
            raise UserError(f"resize {cfg.resize}: a torch Dataset's images are used at their size; resize them in "
                            "the Dataset" if data is not None else f"--resize {cfg.resize} with images read as "
                            f"needed (--loading lazy): use --size {cfg.resize} instead, which brings each file to "
                            "that size as it is read")
        mode = fit_mode(cfg.resize_mode, "resize")
        sets = {name: resized(s, cfg.resize, mode) for name, s in sets.items()}
        info.notes.append(f"images resized from {info.size[0]}x{info.size[1]} to {cfg.resize}x{cfg.resize} ({mode})")
        info.size = (cfg.resize, cfg.resize)
    if cfg.train_fraction < 1 and "train" in sets:
        sets["train"] = subsample(sets["train"], cfg.train_fraction, cfg.seed)
        info.notes.append(f"trained on {len(sets['train'])} training images ({cfg.train_fraction:.0%}, stratified)")
    return info, sets


def fit_mode(resize_mode: str | None, option: str) -> str:
    """The --resize-mode in use for `option`: for --size (image files brought to the input size) resize, pad or
    crop, unset (and the interpolation names nearest and bilinear, which runs saved before pad and crop existed
    hold) meaning resize; for --resize as given, unset meaning nearest (as MedMNIST's '(224)' baselines)."""
    if option == "size":
        return resize_mode if resize_mode in ("pad", "crop") else "resize"
    return resize_mode or "nearest"


def with_channels(s: ImageSet, channels: int) -> ImageSet:
    """s with images (N, channels, H, W): grey copied into 3 channels, or RGB to its luminance (as image files
    are read, data.images.LUMA); same dtype."""
    if channels not in (1, 3) or s.images.shape[1] not in (1, 3):
        raise UserError(f"--channels {channels}: expected 1 or 3 (images have {s.images.shape[1]})")
    if channels == 3:
        return ImageSet(s.images.expand(-1, 3, -1, -1).contiguous(), s.labels, s.paths)
    grey = (s.images.float() * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return ImageSet(grey.round().to(torch.uint8) if s.images.dtype == torch.uint8 else grey, s.labels, s.paths)


def resized(s: ImageSet, side: int, mode: str, chunk: int = 256) -> ImageSet:
    """s with images (N, C, side, side), same dtype; `mode` nearest or bilinear (interpolation), or resize, pad,
    crop (data.images.fit); in chunks to bound memory."""
    parts = []
    for start in range(0, len(s), chunk):
        x = s.images[start:start + chunk].float()
        if mode in ("nearest", "bilinear"):
            x = F.interpolate(x, size=(side, side), mode=mode,
                              **({} if mode == "nearest" else {"align_corners": False, "antialias": True}))
        else:
            x = fit(x, (side, side), mode)
        parts.append(x.round().clamp(0, 255).to(torch.uint8) if s.images.dtype == torch.uint8 else x)
    return ImageSet(torch.cat(parts), s.labels, s.paths)


def subsample(s: ImageSet, fraction: float, seed: int) -> ImageSet:
    """A stratified random `fraction` of s (at least one image per label pattern)."""
    rng = np.random.default_rng(seed)
    keys = [tuple(row) for row in s.labels.tolist()]
    keep: list[int] = []
    for key in sorted(set(keys)):
        idx = np.array([i for i, k in enumerate(keys) if k == key])
        keep.extend(rng.choice(idx, max(1, round(fraction * len(idx))), replace=False).tolist())
    keep_t = torch.tensor(sorted(keep))
    paths = [s.paths[i] for i in keep_t.tolist()] if s.paths else None
    images = s.images.subset(keep_t) if is_lazy(s.images) else s.images[keep_t]
    return ImageSet(images, s.labels[keep_t], paths)
