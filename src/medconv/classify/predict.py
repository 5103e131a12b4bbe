"""Class probabilities from a trained network: for tensors, ImageSets, and image files or folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from ..config import TrainConfig
from ..data import resized
from ..data.datasets import fit_mode, with_channels
from ..data.given import as_images
from ..data.reading import Reading, read_images
from ..data.images import fit, parse_window
from ..data.summary import ReadLog
from ..data.transforms import normalise, tta_views
from ..data.types import ImageSet, unit_float
from ..data.volume_sets import volumes_like_training
from ..data.volumes import parse_spacing
from ..errors import UserError
from ..fileio import image_files, write_csv
from ..infer.shards import everyone, gather_in_order, local_device, my_share
from ..metrics import scores_from_logits
from ..training.checkpoint import load_model
from ..training.runstate import check_finished
from ..training.engine import resolve_device
from ..data.levels import at_level
from ..progress import make_console
from .rows import prediction_rows
from ..transfer.weights import native_side


@torch.no_grad()
def predict_scores(model: nn.Module, images: torch.Tensor, mean: list[float], std: list[float], task: str,
                   device: torch.device | str = "cpu", batch_size: int = 512, tta: str = "none") -> np.ndarray:
    """Probabilities (N, K) for images (N, C, H, W), uint8 0-255 or float 0-1; TTA views averaged."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device)
        x = normalise(unit_float(x), mean, std)
        views = [scores_from_logits(model(v).float(), task) for v in tta_views(x, tta)]
        out.append(torch.stack(views).mean(0).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def data_size(meta: dict) -> tuple[int, int]:
    """(H, W) the run's data came at before any --resize: its files' size (or its arrays'), else its dataset's
    side (a MedMNIST size, a nucleus --patch)."""
    side = native_side(TrainConfig.from_dict(meta["config"]))
    return tuple(meta.get("file_size") or (side, side))


def reading_description(meta: dict) -> dict:
    """How prediction reads image files for a 2D classifier run, for a reader without torch (an ONNX export's
    sidecar, classify.onnx_predict): size (H, W) before any --resize, resize (None or a side), fit_mode (how
    other sizes are brought to size), window ((center, width) or None) and tta."""
    cfg = TrainConfig.from_dict(meta["config"])
    return {"size": list(data_size(meta)), "resize": cfg.resize, "fit_mode": fit_mode(cfg.resize_mode, "size"),
            "window": parse_window(cfg.window), "tta": cfg.tta}


def resized_as_trained(batch: torch.Tensor, meta: dict) -> torch.Tensor:
    """(N, C, H, W) at data_size(meta) -> the network's input, as the run's --resize did (if it had one)."""
    cfg = TrainConfig.from_dict(meta["config"])
    if not cfg.resize or cfg.resize == batch.shape[-2] == batch.shape[-1]:
        return batch
    return resized(ImageSet(batch, torch.zeros(len(batch), 1)), cfg.resize, fit_mode(cfg.resize_mode, "resize")).images


def load_like_training(files: list[Path], meta: dict) -> tuple[torch.Tensor, ReadLog]:
    """Image files as the run's training images were made: read with its window, brought to data_size(meta) by
    its --resize-mode, stored as uint8 when 8-bit, then resized as --resize did. Returns (N, C, H, W) uint8 or
    float32 in [0, 1], and what reading found (ReadLog.changes: other sizes, alpha)."""
    cfg = TrainConfig.from_dict(meta["config"])
    size = data_size(meta)
    reading = Reading(size=size, fit_mode=fit_mode(cfg.resize_mode, "size"), window=parse_window(cfg.window),
                      channels=meta["in_channels"])
    tensors, _, log = read_images(files, reading, size)
    return resized_as_trained(torch.stack(tensors), meta), log


def input_files(inputs: list[str], meta: dict) -> list[Path]:
    """The files a run reads: for a 3D network each input is a volume (NIfTI file, DICOM series folder), else
    image files named or found in the folders named."""
    return [Path(p) for p in inputs] if len(meta["input_size"]) == 3 else image_files(inputs)


def inputs_like_training(files: list[Path], meta: dict) -> tuple[torch.Tensor, ReadLog]:
    """Files as the run of `meta` read its training data: images (N, C, H, W) or volumes (N, 1, D, H, W), uint8
    or float32 in [0, 1], and what reading found (nothing to say for volumes)."""
    cfg = TrainConfig.from_dict(meta["config"])
    if len(meta["input_size"]) == 3:
        return volumes_like_training(files, tuple(meta["input_size"]), fit_mode(cfg.resize_mode, "size"),
                                     parse_window(cfg.window), parse_spacing(cfg.spacing)), ReadLog()
    return load_like_training(files, meta)


def predict(run_dir: str | Path, images, which: str = "best", tta: str | None = None, device: str = "auto",
            level: str | None = None, allow_unfinished: bool = False) -> np.ndarray:
    """Class probabilities (N, K) for images given in Python: (N, C, H, W), (N, H, W, C) or (N, H, W) arrays or
    tensors, uint8 or floats in [0, 1] (data.given.as_images). They are brought to the run's channels, to its
    data's size by its --resize-mode (a note on stderr says so), resized as its --resize did, and normalised as
    in training. `level`: summed up to that level of the run's --taxonomy."""
    device = str(resolve_device(device))  # auto: CUDA when there is one
    check_finished(run_dir, allow_unfinished, which)
    model, meta = load_model(run_dir, which, device)
    x = as_images(images)
    if x.shape[1] != meta["in_channels"]:
        x = with_channels(ImageSet(x, torch.zeros(len(x), 1)), meta["in_channels"]).images
    size = data_size(meta)
    if tuple(x.shape[-2:]) != size:
        mode = fit_mode(TrainConfig.from_dict(meta["config"]).resize_mode, "size")
        make_console().print(f"note: {len(x)} images of {x.shape[-2]}x{x.shape[-1]} brought to the "
                             f"{size[0]}x{size[1]} the run trained on by --resize-mode {mode}", highlight=False,
                             soft_wrap=True)
        x = fit(unit_float(x), size, mode).clamp_(0, 1)
    scores = predict_scores(model, resized_as_trained(x, meta), meta["mean"], meta["std"], meta["task"], device,
                            tta=tta or meta["config"].get("tta", "none"))
    return at_level(meta, level, scores)[0] if level else scores


def predict_files(run_dir: str | Path, inputs: list[str], out: str | Path | None = None, which: str = "best",
                  tta: str | None = None, device: str = "auto", chunk: int = 256, level: str | None = None,
                  allow_unfinished: bool = False, console: Console | None = None) -> list[dict]:
    """Probabilities for each image file; rows {path, prob_<class>..., predicted}; CSV at `out` if given; what
    reading changed (other sizes, alpha) is said on `console` (default stderr).
    `tta` None: as the run was trained to evaluate. Files are read `chunk` at a time. `level`: summed up
    to that level of the run's --taxonomy. A run that has not finished training is refused unless
    `allow_unfinished`. Under torchrun each rank classifies its share of the files (infer.shards) and every rank
    returns all rows, in input order."""
    device = local_device(str(resolve_device(device)))  # auto: CUDA when there is one (under torchrun: its GPU)
    check_finished(run_dir, allow_unfinished, which)
    model, meta = load_model(run_dir, which, device)
    cfg = TrainConfig.from_dict(meta["config"])
    files = input_files(inputs, meta)
    mine = my_share(files)  # under torchrun: this rank's files (infer.shards), all of them in one process
    tta = tta or meta["config"].get("tta", "none")
    parts, found, size = [], ReadLog(), tuple(meta.get("file_size") or ())
    failure, i = None, 0
    try:
        for i in range(0, len(mine), chunk):
            batch, log = inputs_like_training(mine[i:i + chunk], meta)
            parts.append(predict_scores(model, batch, meta["mean"], meta["std"], meta["task"], device, tta=tta))
            found.merge(log)
            size = size or tuple(batch.shape[-2:])
    except UserError as exc:  # under torchrun: raised on every rank once all are here (infer.shards)
        failure = exc
    scores = np.concatenate(parts) if parts else np.zeros((0, len(meta["classes"])), np.float32)
    classes, task = meta["classes"], meta["task"]
    if level:
        scores, _, classes, task = at_level(meta, level, scores)
    rows = gather_in_order(prediction_rows(mine, scores, classes, task), failure, i)  # all ranks', in input order
    logs, found = everyone(found), ReadLog()  # every rank's reading, so the notes count all files
    for log in logs:
        found.merge(log)
    for line in found.changes(size, fit_mode(cfg.resize_mode, "size")) if size else []:
        (console or make_console()).print(f"note: {line}", highlight=False, soft_wrap=True)
    if out is not None:
        write_csv(out, rows)  # by rank 0 (fileio.writes_here)
    return rows


def class_number(target: str | int | None, classes: list[str]) -> int | None:
    """The index of a class given by name or by index (--class), None when not given."""
    if target is None:
        return None
    if str(target) in classes:
        return classes.index(str(target))
    if str(target).lstrip("-").isdigit() and 0 <= int(target) < len(classes):
        return int(target)
    raise UserError(f"--class {target}: expected a class index 0..{len(classes) - 1} or a name: "
                    f"{', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}")
