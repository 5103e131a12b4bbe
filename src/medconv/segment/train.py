"""`medconv segment train` on the training engine: a patch classifier on pixel-centred patches (mode
patch), or a dense prediction network on tiles (mode dense), validated on whole images.

The checkpoint is chosen on the validation images' foreground F1 (or pixel error, or with point data the
detection F1 of the maps' tuned local maxima), computed on whole posterior maps (exact dense scanning
for patch classifiers). Epochs, schedule, precision, weight average and resume are the engine's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from ..data.patches import PatchSampler, augment_patches, class_weights
from ..data.segmentation import SegImage, SegInfo
from ..data.augment import AugmentConfig
from ..data.transforms import normalise
from ..detect.hard_negatives import false_positives
from ..detect.tuning import tune
from ..errors import UserError
from ..fileio import write_text
from ..models.registry import build_model
from ..progress import make_console
from ..training.engine import fit, open_run, resolve_device
from ..training.runstate import tell_data
from .config import SegmentConfig, tile_augment
from .data import load_data, pixel_stats
from .evaluate import BOUNDARY_CLASSES, finish_segmentation, split_metrics
from .maps import MapMaker
from .weights import border_weights, object_labels

PATH_FIELDS = ("manifest", "images", "masks", "roi", "data_root", "points", "hard_negatives")


def build(cfg: SegmentConfig, info: SegInfo) -> torch.nn.Module:
    side = cfg.patch if cfg.mode == "patch" else cfg.tile
    return build_model(cfg.arch, info.channels, len(info.classes), (side, side), **cfg.model_options)


class TileSampler:
    """Random tile x tile crops of the images with their masks (-1 outside the roi), or with their soft
    targets (float, when every image has one): for dense networks."""

    def __init__(self, images: list[SegImage], tile: int, weights: list[np.ndarray] | None = None):
        if any(min(im.image.shape[1:]) < tile for im in images):
            raise UserError(f"--tile {tile} is larger than a training image; choose a smaller --tile")
        self.images, self.tile, self.weights = images, tile, weights
        self.soft = all(im.target is not None for im in images)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Images (N, C, T, T), masks or soft targets (N, T, T), and per-pixel loss weights (N, T, T) or None."""
        xs, ys, ws = [], [], []
        for i in torch.randint(0, len(self.images), (n,), generator=generator).tolist():
            im = self.images[i]
            h, w = im.mask.shape
            y0 = int(torch.randint(0, h - self.tile + 1, (1,), generator=generator))
            x0 = int(torch.randint(0, w - self.tile + 1, (1,), generator=generator))
            crop = (slice(y0, y0 + self.tile), slice(x0, x0 + self.tile))
            mask = torch.from_numpy((im.target if self.soft else im.mask)[crop].copy())
            if im.roi is not None and not self.soft:
                mask[~torch.from_numpy(im.roi[crop])] = -1
            xs.append(torch.from_numpy(im.image[(slice(None), *crop)].copy()))
            ys.append(mask)
            if self.weights is not None:
                ws.append(torch.from_numpy(self.weights[i][crop].copy()))
        return torch.stack(xs), torch.stack(ys), torch.stack(ws) if ws else None


def augment_tiles(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, aug: AugmentConfig, classes: int,
                  w: torch.Tensor | None = None):
    """The same flips, rotations and elastic field for images (N, C, T, T) and masks (N, T, T) (carried as
    one-hot channels, then argmax; -1 stays -1; soft float targets are carried as they are), and loss
    weights w (N, T, T) when given; intensity and colour on the images only. Returns (x, y, w)."""
    def photometric(x):
        if not (aug.intensity or aug.colour):
            return x
        return augment_patches(x, generator, False, False, 0.0, aug.intensity, colour=aug.colour)

    if y.is_floating_point():
        both = augment_patches(torch.cat([x, y.unsqueeze(1)], 1), generator, aug.flips, aug.rot90, aug.elastic)
        return photometric(both[:, :-1]), both[:, -1], None
    onehot = F.one_hot(y.clamp_min(0), classes).permute(0, 3, 1, 2).float() * (y >= 0).unsqueeze(1)
    carried = [x, onehot, (y >= 0).unsqueeze(1).float()] + ([w.unsqueeze(1)] if w is not None else [])
    both = augment_patches(torch.cat(carried, 1), generator, aug.flips, aug.rot90, aug.elastic)
    c, k = x.shape[1], onehot.shape[1]
    x, onehot, valid = both[:, :c], both[:, c:c + k], both[:, c + k] > 0.5
    w = both[:, c + k + 1] if w is not None else None
    x = photometric(x)
    return x, torch.where(valid, onehot.argmax(1), torch.full_like(valid, -1, dtype=torch.long)), w


def segmentation_loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None,
                      pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of logits (N, K[, H, W]) against classes y (N[, H, W]) (-1: ignored), or against soft
    foreground probabilities y (float, K = 2): the target distribution (1 - y, y). `weight`: per class (K,);
    `pixel_weight` (N, H, W): per pixel (border weights), the loss their weighted mean over labelled pixels."""
    if y.is_floating_point():
        return F.cross_entropy(logits, torch.stack([1 - y, y], 1))
    if pixel_weight is None:
        return F.cross_entropy(logits, y, weight=weight, ignore_index=-1)
    losses = F.cross_entropy(logits, y, weight=weight, ignore_index=-1, reduction="none")
    pixel_weight = pixel_weight * (y >= 0)
    return (losses * pixel_weight).sum() / pixel_weight.sum().clamp_min(1e-12)


def border_weight_maps(cfg: SegmentConfig, info: SegInfo, images: list[SegImage],
                       console: Console) -> list[np.ndarray] | None:
    """Each training image's separation-border weights (H, W) with --border-weight, else None."""
    if not cfg.border_weight:
        return None
    boundary = info.classes[-1] in BOUNDARY_CLASSES
    maps = [border_weights(object_labels(im.mask, boundary), cfg.border_weight, cfg.border_sigma) for im in images]
    console.print(f"border weights: w0 {cfg.border_weight}, sigma {cfg.border_sigma} px, between the "
                  f"{'regions the ' + info.classes[-1] + ' separates' if boundary else 'objects'}; mean weight "
                  f"{float(np.mean([m.mean() for m in maps])):.2f}")
    return maps


def score(maker: MapMaker, images: list[SegImage], classes: list[str], tolerance: float | None = None) -> dict:
    """Validation during training: foreground F1 and pixel error of the labelled images (no Rand error or
    object metrics, which the final evaluation adds); with a `tolerance`, also `detection_f1`, the best F1
    of the centre maps' local maxima (as detect train then tunes them) against the images' points."""
    labelled = [im for im in images if im.mask is not None]
    maps = [maker(torch.from_numpy(im.image)).numpy() for im in labelled]
    out = split_metrics(labelled, maps, classes, objects=False)
    if tolerance is not None:
        out["detection_f1"] = tune([m[1] for m in maps], [im.points for im in labelled], tolerance)["f1"]
    return out


class SampledBatches(IterableDataset):
    """`steps` augmented training batches (x (N, C, P, P), y (N[, P, P]), loss weights (N, P, P) or None),
    drawn from a patch or tile sampler with one epoch's generator."""

    def __init__(self, cfg: SegmentConfig, sampler, aug: AugmentConfig, classes: int, steps: int,
                 generator: torch.Generator):
        self.cfg, self.sampler, self.aug, self.classes = cfg, sampler, aug, classes
        self.steps, self.generator = steps, generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            if self.cfg.mode == "patch":
                x, y = self.sampler.sample(self.cfg.batch_size, self.generator)
                yield augment_patches(x, self.generator, **self.aug.patch_options()), y, None
            else:
                x, y, w = self.sampler.sample(self.cfg.batch_size, self.generator)
                yield augment_tiles(x, y, self.generator, self.aug, self.classes, w)


class SegmentationTask:
    """Sampled patches or tiles, (weighted) cross-entropy, validation on whole maps of the validation images."""

    columns = ["val_f1", "val_pixel_error", "val_detection_f1"]

    def __init__(self, cfg: SegmentConfig, model: nn.Module, info: SegInfo, splits: dict, sampler, meta: dict,
                 device: torch.device, tolerance: float):
        self.cfg, self.model, self.info, self.sampler, self.meta, self.device = cfg, model, info, sampler, meta, device
        self.val, self.tolerance = splits["val"], tolerance
        self.splits = {"train": splits["train"], "val": splits["val"]}  # the run's data fingerprint (the engine)
        self.select, self.lower_is_better = f"val_{cfg.select_metric}", cfg.select_metric == "pixel_error"
        self.weight = (class_weights(splits["train"], len(info.classes)).to(device)
                       if cfg.class_weights == "balanced" else None)
        self.aug = tile_augment(cfg.augment)

    def batches(self, epoch: int, generator: torch.Generator) -> DataLoader:
        steps = max(1, self.cfg.samples_per_epoch // self.cfg.batch_size)
        return DataLoader(SampledBatches(self.cfg, self.sampler, self.aug, len(self.info.classes), steps, generator),
                          batch_size=None)

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        x, y, w = batch
        logits = model(normalise(x.to(self.device), self.meta["mean"], self.meta["std"])).float()
        return segmentation_loss(logits, y.to(self.device), self.weight, None if w is None else w.to(self.device))

    def validate(self, model: nn.Module) -> dict[str, float]:
        val = score(MapMaker(model, self.meta, device=str(self.device)), self.val, self.info.classes,
                    self.tolerance if self.cfg.select_metric == "detection_f1" else None)
        return {"val_f1": val["f1"], "val_pixel_error": val["pixel_error"],
                "val_detection_f1": val.get("detection_f1", "")}

    def status(self, row: dict) -> str:
        # the argmax of a proximity map (rarely above 0.5) says little: only its peaks are scored
        return ((f"val F1 {row['val_f1']:.4f} pixel error {row['val_pixel_error']:.4f}"
                 if self.cfg.target != "proximity" else "")
                + (f" detection F1 {row['val_detection_f1']:.4f}" if row["val_detection_f1"] != "" else ""))


def train_segmentation(cfg: SegmentConfig, out: str | Path, resume: bool = False,
                       console: Console | None = None, overrides: dict | None = None, tolerance: float = 6.0,
                       score_test: bool = True) -> dict:
    """Train per `cfg` into run directory `out`; returns metrics.json's content (val, and test unless not
    `score_test`: an exploration that must not look at the test images). With
    `resume`, the saved configuration is used; `overrides` may extend --epochs or change the device.
    `tolerance`: point data, the match distance in px of --select-metric detection_f1 and --hard-negatives."""
    console = console or make_console()
    cfg, run = open_run(cfg, out, resume, overrides, PATH_FIELDS)
    with run:
        info, splits = load_data(cfg)
        if not splits["val"]:
            raise UserError("segmentation training needs at least one validation image (to choose the checkpoint)")
        sampler = (PatchSampler(splits["train"], cfg.patch, cfg.balance, cfg.seed) if cfg.mode == "patch"
                   else TileSampler(splits["train"], cfg.tile, border_weight_maps(cfg, info, splits["train"], console)))
        device = resolve_device(cfg.device)
        if cfg.hard_negatives:
            hard = false_positives(cfg.hard_negatives, splits["train"], tolerance, str(device))
            sampler.add_hard(hard, cfg.hard_fraction)
            console.print(f"hard negatives: {len(hard)} false positives of {cfg.hard_negatives} on the training "
                          f"images, {cfg.hard_fraction:.0%} of every batch")
        torch.manual_seed(cfg.seed)
        model = build(cfg, info).to(device)
        mean, std = pixel_stats(splits["train"])
        side = cfg.patch if cfg.mode == "patch" else cfg.tile
        meta = {"arch": cfg.arch, "model_options": cfg.model_options, "in_channels": info.channels,
                "num_classes": len(info.classes), "input_size": [side, side], "classes": info.classes,
                "task": "segmentation", "mode": cfg.mode, "patch": cfg.patch, "tile": cfg.tile, "dataset": info.name,
                "mean": mean, "std": std, "config": cfg.to_dict()}
        write_text(run.out / "config.yaml", cfg.dump())
        tell_data(run.out, console, info.summary, info.notes)
        fit(SegmentationTask(cfg, model, info, splits, sampler, meta, device, tolerance), cfg, run, meta, console)
        scored = splits if score_test else {k: v for k, v in splits.items() if k != "test"}
        return finish_segmentation(run.out, info, scored, console, str(device))
