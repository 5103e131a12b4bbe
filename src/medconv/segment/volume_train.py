"""`medconv segment train` on volumes (NIfTI or DICOM series with label maps, msd_hippocampus): a 3D U-Net
trained on random crops with Dice + cross-entropy (MONAI's DiceCELoss), validated on whole volumes by
sliding-window inference (segment.volume_maps), the checkpoint the epoch of the best mean validation Dice.
Epochs, schedule, precision, weight average and resume are the training engine's.

Crops: --tile voxels a side, or a volume's whole extent where smaller (rounded up to what the U-Net can halve),
so small structures such as the hippocampus train on whole volumes. Half of the crops are centred on a labelled
voxel, half anywhere (as nnU-Net's foreground oversampling). They are drawn here with the engine's seeded
generator rather than by MONAI's RandCropByPosNegLabel, whose own random state would make a resumed run differ
from an uninterrupted one.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from ..data.augment import AugmentConfig
from ..data.segmentation import SegImage, SegInfo
from ..data.transforms import normalise
from ..errors import UserError
from ..fileio import write_json, write_text
from ..models.registry import build_model
from ..progress import make_console
from ..data.fingerprint import fingerprint
from ..training.checkpoint import read_checkpoint
from ..training.engine import fit, open_run, resolve_device
from ..training.runstate import tell_data, write_fingerprints
from .config import SegmentConfig, tile_augment
from .data import pixel_stats
from .volume_maps import evaluate_volumes, load_volume_data, padded_to, score_volumes, volume_summary

PATH_FIELDS = ("manifest", "data_root")
FOREGROUND_FRACTION = 0.5


def crop_shape(tile: int, images: list[SegImage], step: int) -> tuple[int, int, int]:
    """Per axis: --tile, or the largest training extent rounded up to a multiple of `step` where smaller."""
    extent = np.max([im.image.shape[1:] for im in images], axis=0)
    return tuple(int(min(tile, math.ceil(e / step) * step)) for e in extent)


class CropSampler:
    """Random crops (N, C, d, h, w) of the training volumes with their label maps (N, d, h, w); volumes smaller
    than the crop are padded (image 0, labels background)."""

    def __init__(self, images: list[SegImage], crop: tuple[int, int, int]):
        self.crop = crop
        self.images, self.masks, self.foreground = [], [], []
        for im in images:
            self.images.append(padded_to(im.image, crop))
            self.masks.append(padded_to(im.mask, crop))
            self.foreground.append(np.argwhere(self.masks[-1] > 0))

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(n):
            i = int(torch.randint(0, len(self.images), (1,), generator=generator))
            shape, fg = self.masks[i].shape, self.foreground[i]
            if len(fg) and float(torch.rand(1, generator=generator)) < FOREGROUND_FRACTION:
                centre = fg[int(torch.randint(0, len(fg), (1,), generator=generator))]
                start = [int(np.clip(c - k // 2, 0, s - k)) for c, k, s in zip(centre, self.crop, shape)]
            else:
                start = [int(torch.randint(0, s - k + 1, (1,), generator=generator)) for k, s in zip(self.crop, shape)]
            where = tuple(slice(a, a + k) for a, k in zip(start, self.crop))
            xs.append(torch.from_numpy(self.images[i][(slice(None), *where)]))
            ys.append(torch.from_numpy(self.masks[i][where]))
        return torch.stack(xs), torch.stack(ys)


def augment_crops(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                  aug: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The same flips (each axis, p 0.5) and quarter turns in the H-W plane (square crops) for images
    (N, C, d, h, w) and label maps (N, d, h, w); contrast and brightness (+- aug.intensity) on the images only."""
    xs, ys = [], []
    for xi, yi in zip(x, y):
        if aug.flips:
            for axis in range(3):
                if float(torch.rand(1, generator=generator)) < 0.5:
                    xi, yi = xi.flip(axis + 1), yi.flip(axis)
        if aug.rot90 and xi.shape[-1] == xi.shape[-2]:
            k = int(torch.randint(0, 4, (1,), generator=generator))
            xi, yi = torch.rot90(xi, k, (2, 3)), torch.rot90(yi, k, (1, 2))
        if aug.intensity:  # contrast and brightness, each uniform in +-intensity
            contrast, shift = 1 + (torch.rand(2, generator=generator) * 2 - 1) * aug.intensity
            mean = xi.mean()
            xi = ((xi - mean) * contrast + mean + (shift - 1)).clamp(0, 1)
        xs.append(xi), ys.append(yi)
    return torch.stack(xs).contiguous(), torch.stack(ys).contiguous()


def check_volume_augment(aug: AugmentConfig) -> None:
    if aug.elastic or aug.colour:
        raise UserError("--augment elastic and colour are 2D; volumes take flips, rot90 and intensity")


class VolumeSegmentationTask:
    """Random crops, Dice + cross-entropy, validation Dice on whole volumes (sliding window)."""

    columns = ["val_dice"]
    select, lower_is_better = "val_dice", False

    def __init__(self, cfg: SegmentConfig, model: nn.Module, info: SegInfo, splits: dict, sampler: CropSampler,
                 meta: dict, device: torch.device):
        from monai.losses import DiceCELoss

        self.cfg, self.model, self.info, self.sampler, self.meta, self.device = cfg, model, info, sampler, meta, device
        self.val = splits["val"]
        self.splits = {"train": splits["train"], "val": splits["val"]}  # the run's data fingerprint (the engine)
        self.aug = tile_augment(cfg.augment)
        self.criterion = DiceCELoss(to_onehot_y=True, softmax=True)

    def batches(self, epoch: int, generator: torch.Generator) -> "CropBatches":
        return CropBatches(self, max(1, self.cfg.samples_per_epoch // self.cfg.batch_size), generator)

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        logits = model(normalise(x.to(self.device), self.meta["mean"], self.meta["std"])).float()
        return self.criterion(logits, y.to(self.device)[:, None])

    def validate(self, model: nn.Module) -> dict[str, float]:
        summary, _ = score_volumes(model, self.meta, self.val, self.device)
        return {"val_dice": summary["dice_mean"]}

    def status(self, row: dict) -> str:
        return f"val Dice {row['val_dice']:.4f}"


class CropBatches:
    """An epoch's `steps` batches of augmented crops, drawn as they are iterated (len: for the progress bar)."""

    def __init__(self, task: VolumeSegmentationTask, steps: int, generator: torch.Generator):
        self.task, self.steps, self.generator = task, steps, generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            x, y = self.task.sampler.sample(self.task.cfg.batch_size, self.generator)
            yield augment_crops(x, y, self.generator, self.task.aug)


def train_volume_segmentation(cfg: SegmentConfig, out: str | Path, resume: bool = False,
                              console: Console | None = None, overrides: dict | None = None,
                              score_test: bool = True) -> dict:
    """Train a 3D segmentation run per `cfg` into `out`; returns metrics.json's content (val, and test unless
    not `score_test`)."""
    console = console or make_console()
    cfg, run = open_run(cfg, out, resume, overrides, PATH_FIELDS)
    with run:
        check_volume_augment(tile_augment(cfg.augment))
        info, splits = load_volume_data(cfg)
        for name in ("train", "val"):
            if not any(im.mask is not None for im in splits[name]):
                raise UserError(f"3D segmentation needs labelled {name} volumes; the {name} split has none")
        widths = cfg.model_options.get("widths", (16, 32, 64, 128))
        crop = crop_shape(cfg.tile, splits["train"], 2 ** (len(widths) - 1))
        device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.arch, info.channels, len(info.classes), crop, **cfg.model_options).to(device)
        mean, std = pixel_stats(splits["train"])
        meta = {"arch": cfg.arch, "model_options": cfg.model_options, "in_channels": info.channels,
                "num_classes": len(info.classes), "input_size": list(crop), "classes": info.classes,
                "task": "segmentation", "mode": "dense", "dims": 3, "dataset": info.name, "mean": mean, "std": std,
                "config": cfg.to_dict()}
        write_text(run.out / "config.yaml", cfg.dump())
        tell_data(run.out, console, info.summary + [f"crops {'x'.join(map(str, crop))} (D x H x W), "
                                                    f"{cfg.samples_per_epoch} an epoch in batches of {cfg.batch_size}"],
                  info.notes)
        sampler = CropSampler([im for im in splits["train"] if im.mask is not None], crop)
        fit(VolumeSegmentationTask(cfg, model, info, splits, sampler, meta, device), cfg, run, meta, console)
        _, last = read_checkpoint(run.last)
        result = {"dataset": info.name, "arch": cfg.arch, "epochs": last["epoch"], "best_epoch": last["best_epoch"],
                  "train_seconds": round(sum(r["seconds"] for r in last["history"]), 1)}
        for split in ("val", "test") if score_test else ("val",):
            if any(im.mask is not None for im in splits[split]):
                result[split] = evaluate_volumes(run.out, split, device=str(device), data=(info, splits),
                                                 allow_unfinished=True)
        write_fingerprints(run.out, fingerprint({k: v for k, v in splits.items() if v}))
        write_json(run.out / "metrics.json", result)
        console.print(f"best epoch {result['best_epoch']}: "
                      + ", ".join(f"{s} {volume_summary(result[s])}" for s in ("val", "test")
                                  if s in result) + f"  ->  {run.out}", highlight=False, soft_wrap=True)
        return result
