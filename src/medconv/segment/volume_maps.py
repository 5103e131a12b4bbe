"""3D segmentation after training: whole-volume class probabilities by MONAI's sliding-window inference
(overlapping patches of the training crop's shape, Gaussian-weighted), Dice per structure and relative volume
error per volume, NIfTI label maps written on the input's grid, and orthogonal-slice pictures.

`segment evaluate` and `segment predict` of a run whose network is 3D (meta "dims" 3) come here."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import torch

from ..report.slices import orthogonal_slices
from ..data.segmentation import SegImage, SegInfo
from ..data.transforms import normalise
from ..data.volume_pairs import load_volume_segmentation, read_pair, volume_name
from ..data.volumes import parse_spacing, write_label_map
from ..data.images import parse_window
from ..errors import UserError
from ..fileio import own_files, write_json
from ..infer.shards import flattened, gather_in_order, local_device, my_share
from ..measure import label_volumes
from ..progress import make_console
from ..training.checkpoint import load_model
from ..training.runstate import check_finished, warn_if_data_changed
from ..training.engine import resolve_device
from .config import SegmentConfig
from .evaluate import metrics_name

OVERLAP = 0.5
PICTURES = 3  # volumes of a split drawn by evaluate (RUN/plots/SPLIT/NAME_slices.png)


def is_volume_run(meta: dict) -> bool:
    """Whether a segmentation run's network takes volumes."""
    return meta.get("dims") == 3


def load_volume_data(cfg: SegmentConfig) -> tuple[SegInfo, dict[str, list[SegImage]]]:
    return load_volume_segmentation(manifest=cfg.manifest, dataset=cfg.dataset, data_root=cfg.data_root,
                                    value_map=cfg.value_map, classes=cfg.classes, window=parse_window(cfg.window),
                                    val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed,
                                    mask_type=cfg.mask_type, spacing=parse_spacing(cfg.spacing))


@torch.no_grad()
def volume_probabilities(model: torch.nn.Module, image: np.ndarray, meta: dict, device: str | torch.device,
                         tta: str = "none") -> np.ndarray:
    """Class probabilities (K, D, H, W) of one volume (C, D, H, W) in [0, 1]: softmax of the sliding-window
    logits (MONAI's sliding_window_inference, window = the training crop, 50% overlap, Gaussian weights; a volume
    smaller than the window is padded as training pads it, padded_to, and cropped back). tta "flip": also the
    three axis flips, averaged."""
    from monai.inferers import sliding_window_inference

    shape = image.shape[1:]
    padded = padded_to(image, tuple(meta["input_size"]))
    x = normalise(torch.from_numpy(padded)[None].float(), meta["mean"], meta["std"]).to(device)
    flips = [()] if tta == "none" else [(), (2,), (3,), (4,)]
    total = None
    for axes in flips:
        view = x.flip(axes) if axes else x
        logits = sliding_window_inference(view, tuple(meta["input_size"]), sw_batch_size=4, predictor=model,
                                          overlap=OVERLAP, mode="gaussian")
        probs = torch.softmax(logits.float(), 1)
        probs = probs.flip(axes) if axes else probs
        total = probs if total is None else total + probs
    return (total / len(flips))[0, :, :shape[0], :shape[1], :shape[2]].cpu().numpy()


def padded_to(array: np.ndarray, window: tuple[int, int, int]) -> np.ndarray:
    """A volume (C, D, H, W) (or label map (D, H, W)) padded with 0 at the far end of each axis shorter than
    `window` (D, H, W), before normalisation: training's crops of small volumes (volume_train.CropSampler) and
    inference see the same padding. (MONAI's sliding window would pad the normalised volume on both sides
    with 0, the mean intensity, where training saw the darkest value; with instance normalisation over a
    window that is mostly padding, the whole map shifts.)"""
    lead = [(0, 0)] * (array.ndim - 3)
    pad = lead + [(0, max(0, w - s)) for w, s in zip(window, array.shape[-3:])]
    return np.pad(array, pad) if any(after for _, after in pad) else array


def on_grid(probs: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Probabilities (K, d, h, w) of a resampled volume brought to its file's grid `shape` (MONAI's Resize,
    trilinear), so the argmax labels lie on the voxels the file has."""
    from monai.transforms import Resize

    return np.asarray(Resize(shape, mode="trilinear")(probs))


def dice_per_class(labels: np.ndarray, truth: np.ndarray, classes: int) -> list[float]:
    """Dice of each foreground class 1..K-1 between integer maps (D, H, W); 1.0 where both lack the class."""
    out = []
    for k in range(1, classes):
        p, t = labels == k, truth == k
        total = int(p.sum()) + int(t.sum())
        out.append(1.0 if total == 0 else 2.0 * int((p & t).sum()) / total)
    return out


def volume_scores(labels: np.ndarray, truth: np.ndarray, classes: list[str], spacing=(1.0, 1.0, 1.0)) -> dict:
    """One volume's Dice per structure and mean, and relative volume error (predicted - true) / true per
    structure (None where the structure is absent from the truth)."""
    dice = dice_per_class(labels, truth, len(classes))
    found, true = label_volumes(labels, spacing), label_volumes(truth, spacing)
    errors = {name: ((found.get(k, (0, 0.0))[1] - true[k][1]) / true[k][1] if k in true else None)
              for k, name in enumerate(classes) if k > 0}
    return {"dice": dict(zip(classes[1:], dice)), "dice_mean": float(np.mean(dice)), "volume_error": errors}


def mean_scores(rows: list[dict], classes: list[str]) -> dict:
    """Means (and standard deviations) over volumes of volume_scores rows."""
    out = {"n": len(rows), "classes": list(classes), "dice_mean": float(np.mean([r["dice_mean"] for r in rows])),
           "dice_mean_std": float(np.std([r["dice_mean"] for r in rows]))}
    for name in classes[1:]:
        dice = [r["dice"][name] for r in rows]
        errors = [abs(r["volume_error"][name]) for r in rows if r["volume_error"][name] is not None]
        out[f"dice_{name}"], out[f"dice_{name}_std"] = float(np.mean(dice)), float(np.std(dice))
        out[f"abs_volume_error_{name}"] = float(np.mean(errors)) if errors else None
    errors = [abs(e) for r in rows for e in r["volume_error"].values() if e is not None]
    out["abs_volume_error"] = float(np.mean(errors)) if errors else None
    return out


def score_volumes(model: torch.nn.Module, meta: dict, images: list[SegImage], device, tta: str = "none",
                  progress: bool = False, pictures: Path | None = None) -> tuple[dict, list[dict]]:
    """(mean_scores, a row per volume) of labelled volumes (relative volume errors need no spacing). With
    `pictures`, orthogonal slices of the first PICTURES volumes there: the prediction filled, the truth as
    contours (NAME_slices.png)."""
    rows = []
    labelled = [im for im in images if im.mask is not None]
    with make_console().status(f"scoring {len(labelled)} volumes") if progress else contextlib.nullcontext():
        for i, im in enumerate(labelled):
            labels = volume_probabilities(model, im.image, meta, device, tta).argmax(0)
            rows.append({"name": im.name, **volume_scores(labels, im.mask, meta["classes"])})
            if pictures is not None and i < PICTURES:
                orthogonal_slices(im.image[0], labels, pictures / f"{im.name}_slices.png", meta["classes"], im.mask,
                                  spacing=im.spacing)
    return mean_scores(rows, meta["classes"]), rows


def evaluate_volumes(run_dir: str | Path, split: str = "test", which: str = "best", device: str = "auto",
                     data: tuple[SegInfo, dict] | None = None, tta: str = "none",
                     allow_unfinished: bool = False) -> dict:
    """Dice per structure (mean ± sd over volumes) and mean absolute relative volume error of a 3D run on a
    split; writes RUN/metrics_{split}.json with a row per volume, and pictures of its first volumes
    (RUN/plots/SPLIT/NAME_slices.png)."""
    device = str(resolve_device(device))
    check_finished(run_dir, allow_unfinished, which)
    model, meta = load_model(run_dir, which, device)
    info, splits = data if data is not None else load_volume_data(SegmentConfig.from_dict(meta["config"]))
    if split not in splits or not any(im.mask is not None for im in splits[split]):
        raise UserError(f"--split {split}: no labelled volumes (splits: {', '.join(k for k, v in splits.items() if v)})")
    if data is None:
        warn_if_data_changed(run_dir, split, splits[split])
    tic = time.time()
    summary, rows = score_volumes(model, meta, splits[split], device, tta, progress=True,
                                  pictures=Path(run_dir) / "plots" / split)
    metrics = {**summary, "seconds_per_volume": (time.time() - tic) / max(1, summary["n"]), "split": split,
               "checkpoint": which, "tta": tta, "volumes": rows}
    write_json(Path(run_dir) / metrics_name(split, tta), metrics)
    return metrics


def volume_summary(m: dict) -> str:
    """A printed line of a split's figures (mean_scores)."""
    per = ", ".join(f"{name} {m[f'dice_{name}']:.3f}" for name in m["classes"][1:])
    error = m["abs_volume_error"]
    return (f"Dice {m['dice_mean']:.3f} ({per})"
            + (f", |volume error| {100 * error:.1f}%" if error is not None else ""))


def predict_volumes(run_dir: str | Path, inputs: list[str], out_dir: str | Path, tta: str = "none",
                    device: str = "auto", pictures: bool = True, allow_unfinished: bool = False) -> list[dict]:
    """Label maps of volume files (NIfTI; DICOM series folders): OUT/NAME_labels.nii.gz on the input's grid (a
    NIfTI input's affine and header; a DICOM series' affine; a run trained at --spacing predicts there and its
    probabilities are brought back to the file's grid), structure volumes in mm³, and with `pictures`
    orthogonal slices with the labels over the image (NAME_slices.png). Returns a row per volume and structure.
    Under torchrun each rank maps its share of the volumes and writes their files; every rank returns all rows,
    in input order."""
    device = local_device(str(resolve_device(device)))  # auto: CUDA when there is one (under torchrun: its GPU)
    check_finished(run_dir, allow_unfinished, "best")
    model, meta = load_model(run_dir, "best", device)
    cfg = SegmentConfig.from_dict(meta["config"])
    window, trained_at = parse_window(cfg.window), parse_spacing(cfg.spacing)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_volume, failure = [], None
    try:
        with own_files():  # under torchrun: each rank maps its share of the volumes and writes their files
            for path in my_share(inputs):
                per_volume.append(predict_volume(model, meta, path, out, window, trained_at, tta, device, pictures))
    except UserError as exc:
        failure = exc
    return flattened(gather_in_order(per_volume, failure))  # every rank's rows, in input order


def predict_volume(model: torch.nn.Module, meta: dict, path: str, out: Path, window, trained_at, tta: str,
                   device: str, pictures: bool) -> list[dict]:
    """predict_volumes for one volume file: its files written, its rows (one per structure) returned."""
    image, _, _, file_meta = read_pair({"image": path, "mask": None}, window, trained_at)
    probs = volume_probabilities(model, image, meta, device, tta)
    if probs.shape[1:] != file_meta.shape:  # resampled to --spacing: back to the file's grid
        probs = on_grid(probs, file_meta.shape)
        image, _, _, _ = read_pair({"image": path, "mask": None}, window)
    labels = probs.argmax(0).astype(np.int64)
    name = volume_name(path)
    write_label_map(out / f"{name}_labels.nii.gz", labels, file_meta)
    if pictures:
        orthogonal_slices(image[0], labels, out / f"{name}_slices.png", meta["classes"], spacing=file_meta.spacing)
    return [{"file": str(path), "label": k, "name": meta["classes"][k], "voxels": voxels,
             "volume_mm3": round(mm3, 3) if file_meta.spacing else ""}
            for k, (voxels, mm3) in label_volumes(labels, file_meta.spacing or (1.0, 1.0, 1.0)).items()]
