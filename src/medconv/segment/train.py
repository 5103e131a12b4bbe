"""`medconv segment train`: a patch classifier on pixel-centred patches (mode patch), or a dense
prediction network on tiles (mode dense), with validation on whole images and checkpoints per epoch.

Each epoch reseeds from (seed, epoch), as the classification loop does, so `--resume` repeats an
interrupted epoch exactly. The checkpoint is chosen on the validation images' foreground F1 (or
pixel error), computed on whole posterior maps (exact dense scanning for patch classifiers).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from ..data.patches import PatchSampler, augment_patches, class_weights
from ..data.segmentation import SegImage, SegInfo, load_segmentation
from ..data.transforms import normalise
from ..errors import TrainingDiverged, UserError
from ..fileio import write_text
from ..models.registry import build_model
from ..training.checkpoint import load_weights, restore_optimizer, save_checkpoint
from ..training.ema import WeightAverage
from ..training.loop import (
    learning_rate,
    make_optimizer,
    open_run,
    progress_bar,
    resolve_device,
    set_determinism,
    write_history,
)
from .config import SegmentConfig, dump, parse_augment
from .maps import MapMaker

HISTORY = ["epoch", "lr", "train_loss", "val_f1", "val_pixel_error", "val_detection_f1", "seconds"]


def load_data(cfg: SegmentConfig) -> tuple[SegInfo, dict[str, list[SegImage]]]:
    if cfg.dataset == "crchistophenotypes" or cfg.points:  # point annotations: discs around the centres
        from ..detect.pipeline import point_segmentation
        return point_segmentation(cfg)
    return load_segmentation(manifest=cfg.manifest, images=cfg.images, masks=cfg.masks, roi=cfg.roi,
                             dataset=cfg.dataset, data_root=cfg.data_root, value_map=cfg.value_map,
                             classes=cfg.classes, channels=cfg.channels, val_fraction=cfg.val_fraction,
                             test_fraction=cfg.test_fraction, seed=cfg.seed)


def pixel_stats(images: list[SegImage]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over all pixels of the images."""
    stacked = np.concatenate([im.image.reshape(im.image.shape[0], -1) for im in images], axis=1)
    return stacked.mean(1).tolist(), np.maximum(stacked.std(1), 1e-6).tolist()


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


def augment_tiles(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, aug: dict, classes: int,
                  w: torch.Tensor | None = None):
    """The same flips, rotations and elastic field for images (N, C, T, T) and masks (N, T, T) (carried as
    one-hot channels, then argmax; -1 stays -1; soft float targets are carried as they are), and loss
    weights w (N, T, T) when given; intensity and colour on the images only. Returns (x, y, w)."""
    def photometric(x):
        if not (aug["intensity"] or aug["colour"]):
            return x
        return augment_patches(x, generator, False, False, 0.0, aug["intensity"], colour=aug["colour"])

    if y.is_floating_point():
        both = augment_patches(torch.cat([x, y.unsqueeze(1)], 1), generator, aug["flips"], aug["rot90"],
                               aug["elastic"])
        return photometric(both[:, :-1]), both[:, -1], None
    onehot = F.one_hot(y.clamp_min(0), classes).permute(0, 3, 1, 2).float() * (y >= 0).unsqueeze(1)
    carried = [x, onehot, (y >= 0).unsqueeze(1).float()] + ([w.unsqueeze(1)] if w is not None else [])
    both = augment_patches(torch.cat(carried, 1), generator, aug["flips"], aug["rot90"], aug["elastic"])
    c, k = x.shape[1], onehot.shape[1]
    x, onehot, valid = both[:, :c], both[:, c:c + k], both[:, c + k] > 0.5
    w = both[:, c + k + 1] if w is not None else None
    x = photometric(x)
    return x, torch.where(valid, onehot.argmax(1), torch.full_like(valid, -1, dtype=torch.long)), w


def forward(model: nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    """Float32 logits of a training batch x (N, C, H, W): in fp32, or under bfloat16 autocast with x in
    channels-last memory (the layout oneDNN's bf16 convolutions run fastest on)."""
    if precision == "fp32":
        return model(x).float()
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        return model(x.contiguous(memory_format=torch.channels_last)).float()


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
    from .evaluate import BOUNDARY_CLASSES
    from .weights import border_weights, object_labels

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
    from .evaluate import split_metrics
    labelled = [im for im in images if im.mask is not None]
    maps = [maker(torch.from_numpy(im.image)).numpy() for im in labelled]
    out = split_metrics(labelled, maps, classes, objects=False)
    if tolerance is not None:
        from ..detect.pipeline import tune
        out["detection_f1"] = tune([m[1] for m in maps], [im.points for im in labelled], tolerance)["f1"]
    return out


def train_segmentation(cfg: SegmentConfig, out: str | Path, resume: bool = False,
                       console: Console | None = None, overrides: dict | None = None, tolerance: float = 6.0) -> dict:
    """Train per `cfg` into run directory `out`; returns metrics.json's content (val and test). With
    `resume`, the saved configuration is used; `overrides` may extend --epochs or change the device.
    `tolerance`: point data, the match distance in px of --select-metric detection_f1 and --hard-negatives."""
    from .evaluate import finish_segmentation

    console = console or Console(stderr=True)
    out = Path(out)
    cfg, saved, last_path, best_path = open_run(cfg, out, resume, overrides, SegmentConfig)
    for name in ("manifest", "images", "masks", "roi", "data_root", "points", "hard_negatives"):  # evaluate may run from another folder
        if getattr(cfg, name):
            setattr(cfg, name, str(Path(getattr(cfg, name)).expanduser().resolve()))
    set_determinism(cfg)
    info, splits = load_data(cfg)
    if not splits["val"]:
        raise UserError("segmentation training needs at least one validation image (to choose the checkpoint)")
    sampler = (PatchSampler(splits["train"], cfg.patch, cfg.balance, cfg.seed) if cfg.mode == "patch"
               else TileSampler(splits["train"], cfg.tile, border_weight_maps(cfg, info, splits["train"], console)))
    device = resolve_device(cfg.device)
    if cfg.hard_negatives:
        from ..detect.pipeline import false_positives
        hard = false_positives(cfg.hard_negatives, splits["train"], tolerance, str(device))
        sampler.add_hard(hard, cfg.hard_fraction)
        console.print(f"hard negatives: {len(hard)} false positives of {cfg.hard_negatives} on the training images, "
                      f"{cfg.hard_fraction:.0%} of every batch")
    torch.manual_seed(cfg.seed)
    model = build(cfg, info).to(device)
    mean, std = pixel_stats(splits["train"])
    side = cfg.patch if cfg.mode == "patch" else cfg.tile
    meta = {"arch": cfg.arch, "model_options": cfg.model_options, "in_channels": info.channels,
            "num_classes": len(info.classes), "input_size": [side, side], "classes": info.classes,
            "task": "segmentation", "mode": cfg.mode, "patch": cfg.patch, "tile": cfg.tile, "dataset": info.name,
            "mean": mean, "std": std, "config": cfg.to_dict()}
    optimizer = make_optimizer(cfg, model)
    average = WeightAverage(model, cfg.ema)  # average.model: validated and kept (the model without --ema)
    start, best, best_epoch, history = 0, -math.inf, 0, []
    if saved is not None:
        load_weights(model, saved[0], last_path, cfg.arch)
        restore_optimizer(optimizer, saved[0], saved[1])
        average.restore(*saved)
        start, best, best_epoch, history = (saved[1][k] for k in ("epoch", "best_metric", "best_epoch", "history"))
        console.print(f"resuming {out} after epoch {start} of {cfg.epochs}")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", dump(cfg))
    for note in info.notes:
        console.print(f"note: {note}")
    k = len(info.classes)
    weight = class_weights(splits["train"], k).to(device) if cfg.class_weights == "balanced" else None
    aug = parse_augment(cfg.augment)
    steps = max(1, cfg.samples_per_epoch // cfg.batch_size)
    with progress_bar(console) as bar:
        task = bar.add_task("training", total=(cfg.epochs - start) * steps, status="")
        for epoch in range(start, cfg.epochs):
            tic = time.time()
            torch.manual_seed(cfg.seed * 1_000_003 + epoch)
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            lr = learning_rate(cfg, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            model.train()
            total = 0.0
            for step in range(steps):
                if cfg.mode == "patch":
                    x, y = sampler.sample(cfg.batch_size, generator)
                    x, w = augment_patches(x, generator, **aug), None
                else:
                    x, y, w = sampler.sample(cfg.batch_size, generator)
                    x, y, w = augment_tiles(x, y, generator, aug, k, w)
                logits = forward(model, normalise(x.to(device), mean, std), cfg.precision)
                loss = segmentation_loss(logits, y.to(device), weight, None if w is None else w.to(device))
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"loss became {loss.item()} in epoch {epoch + 1}, step {step + 1}; "
                                           f"last good checkpoint kept in {last_path.parent}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                average.update(model)
                total += loss.item()
                bar.update(task, advance=1, status=f"epoch {epoch + 1}/{cfg.epochs} loss {total / (step + 1):.4f}")
            val = score(MapMaker(average.model, meta, device=str(device)), splits["val"], info.classes,
                        tolerance if cfg.select_metric == "detection_f1" else None)
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": total / steps, "val_f1": val["f1"],
                   "val_pixel_error": val["pixel_error"], "val_detection_f1": val.get("detection_f1", ""),
                   "seconds": time.time() - tic}
            history.append(row)
            metric = -val["pixel_error"] if cfg.select_metric == "pixel_error" else val[cfg.select_metric]
            if best_epoch == 0 or metric > best:
                best, best_epoch = metric, epoch + 1
                save_checkpoint(best_path, average.model, {**meta, "epoch": epoch + 1, "val_metric": metric})
            resume_meta, resume_tensors = average.resumable()
            save_checkpoint(last_path, model, {**meta, "epoch": epoch + 1, "best_metric": best, "best_epoch": best_epoch,
                                               "history": history, **resume_meta}, optimizer, resume_tensors)
            write_history(out / "history.csv", history, HISTORY)
            status = (f"epoch {epoch + 1}/{cfg.epochs} loss {row['train_loss']:.4f}"
                      # the argmax of a proximity map (rarely above 0.5) says little: only its peaks are scored
                      + (f" val F1 {val['f1']:.4f} pixel error {val['pixel_error']:.4f}"
                         if cfg.target != "proximity" else "")
                      + (f" detection F1 {val['detection_f1']:.4f}" if "detection_f1" in val else "")
                      + f" (best @ {best_epoch})")
            bar.update(task, status=status)
            if not console.is_terminal:
                console.print(status + f" [{row['seconds']:.1f}s]", highlight=False)
    return finish_segmentation(out, info, splits, console, str(device))
