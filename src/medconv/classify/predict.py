"""Class probabilities from a trained network: for tensors, ImageSets, and image files or folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..data import resized
from ..data.images import prepare_image, read_image
from ..data.transforms import normalise, tta_views
from ..data.types import ImageSet, unit_float
from ..fileio import image_files, write_csv
from ..metrics import predicted_labels, scores_from_logits
from ..training.checkpoint import load_model
from ..training.runstate import check_finished
from ..data.levels import at_level
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


def load_like_training(files: list[Path], meta: dict) -> torch.Tensor:
    """Image files as the run's training images were made: read at the dataset's size, stored as uint8,
    then resized as --resize did. Returns (N, C, H, W) uint8."""
    cfg = meta["config"]
    side = native_side(TrainConfig.from_dict(cfg))  # the dataset's side (a nucleus patch: --patch), before --resize
    batch = torch.stack([prepare_image(read_image(f), meta["in_channels"], (side, side)) for f in files])
    batch = batch.mul(255).round_().to(torch.uint8)
    if cfg.get("resize") and cfg["resize"] != side:
        batch = resized(ImageSet(batch, torch.zeros(len(batch), 1)), cfg["resize"], cfg["resize_mode"]).images
    return batch


def predict_files(run_dir: str | Path, inputs: list[str], out: str | Path | None = None, which: str = "best",
                  tta: str | None = None, device: str = "cpu", chunk: int = 256, level: str | None = None,
                  allow_unfinished: bool = False) -> list[dict]:
    """Probabilities for each image file; rows {path, prob_<class>..., predicted}; CSV at `out` if given.
    `tta` None: as the run was trained to evaluate. Files are read `chunk` at a time. `level`: summed up
    to that level of the run's --taxonomy. A run that has not finished training is refused unless
    `allow_unfinished`."""
    check_finished(run_dir, allow_unfinished, which)
    model, meta = load_model(run_dir, which, device)
    files = image_files(inputs)
    tta = tta or meta["config"].get("tta", "none")
    scores = np.concatenate([predict_scores(model, load_like_training(files[i:i + chunk], meta), meta["mean"],
                                            meta["std"], meta["task"], device, tta=tta)
                             for i in range(0, len(files), chunk)])
    classes, task = meta["classes"], meta["task"]
    if level:
        scores, _, classes, task = at_level(meta, level, scores)
    predicted = predicted_labels(scores, task)
    rows = []
    for f, s, p in zip(files, scores, predicted):
        row = {"path": str(f), **{f"prob_{c}": round(float(v), 6) for c, v in zip(classes, s)}}
        row["predicted"] = ";".join(classes[i] for i in np.flatnonzero(p)) if np.ndim(p) else classes[int(p)]
        rows.append(row)
    if out is not None:
        write_csv(out, rows)
    return rows
