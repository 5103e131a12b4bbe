"""Detection as Ciresan et al. 2013 did it: a network maps every pixel to the probability of lying near
an object centre; the map is smoothed and its local maxima are the detections.

Training reuses segmentation: each annotated centre becomes a disc of `radius` pixels (class
"centre"), and `medconv segment train`'s patch classifier or U-Net learns the map. Then the peak
finder's smoothing sigma, minimum distance and threshold are chosen on the validation images (F1 of
one-to-one matches within the tolerance, TP/FP/FN summed over images), and saved in the run as
detect.json, which `detect predict` and `detect evaluate` use.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from ..classify.predict import predict_scores
from ..config import TrainConfig
from ..data import resized
from ..data.datasets import fit_mode
from ..data.points import load_crchistophenotypes
from ..data.segmentation import SegImage
from ..data.types import ImageSet
from ..errors import UserError
from ..fileio import write_json
from ..progress import make_console
from ..segment.config import SegmentConfig
from ..segment.data import load_data
from ..segment.evaluate import load_segmenter
from ..segment.maps import MapMaker
from ..segment.train import train_segmentation
from ..training.checkpoint import checkpoint_path, load_model, read_checkpoint
from ..training.engine import resolve_device
from ..training.runstate import check_finished, warn_if_data_changed
from ..transfer.weights import native_side
from .hard_negatives import centre_maps, detection_maps
from .matching import detection_scores, match, per_class_f1, threshold_sweep
from .overlays import draw_marks
from .peaks import find_peaks, read_params
from .pictures import detection_pictures
from .targets import point_parts
from .tuning import THRESHOLDS, tune

TTA_MIN_GAIN = 0.005  # test-time augmentation costs 8 maps per image: chosen only for at least this much more F1


def tune_run(run_dir: Path, maps: dict[str, list[np.ndarray]], val: list[SegImage], tolerance: float,
             console: Console) -> dict:
    """Choose the peak parameters, and the test-time augmentation (a key of `maps`: the validation images'
    centre maps made with it; "none" wins unless another scores TTA_MIN_GAIN more), on validation; write
    RUN/detect.json."""
    tuned = []
    for tta, tta_maps in maps.items():
        tuned.append({**tune(tta_maps, [im.points for im in val], tolerance), "tta": tta})
        console.print(f"test-time augmentation {tta}: best validation F1 {tuned[-1]['f1']:.4f}")
    best = max(tuned, key=lambda t: t["f1"] - (TTA_MIN_GAIN if t["tta"] != "none" else 0.0))  # ties: the first
    params = {k: best[k] for k in ("sigma", "min_distance", "threshold", "tta")}
    write_json(run_dir / "detect.json", {**params, "tolerance": tolerance, "val_f1": best["f1"], "sweep": best["sweep"],
                                         "tta_f1": {t["tta"]: t["f1"] for t in tuned}})  # detect predict's note
    console.print(f"chosen on validation: sigma {params['sigma']}, min distance {params['min_distance']}, threshold "
                  f"{params['threshold']}, test-time augmentation {params['tta']} (val F1 {best['f1']:.4f})")
    return params


def run_config(run_dir: str | Path):
    """The SegmentConfig a detection run was trained with (read from its checkpoint's header)."""
    return SegmentConfig.from_dict(read_checkpoint(checkpoint_path(run_dir), tensors=False)[1]["config"])


def typed_truth(cfg, split: str) -> dict[str, tuple[np.ndarray, list[str]]]:
    """{image name: (centres (N, 2) 0-based (row, col), their classes)} of the classed points of a split."""
    if cfg.dataset == "crchistophenotypes":  # the classified nuclei (a subset of the detection points)
        parts = load_crchistophenotypes(cfg.data_root, classes=True)
    else:
        parts = point_parts(cfg)[1]
    truth = {p.name: (p.pixels(), p.classes) for p in parts[split]}
    if any(classes is None for _, classes in truth.values()):
        raise UserError("--classifier: the points of this dataset have no classes (a class column is needed)")
    return truth


def evaluate_detection(run_dir: str | Path, split: str = "val", tolerance: float | None = None, device: str = "auto",
                       data=None, overlays: bool = True, classifier: str | Path | None = None,
                       maps: list[np.ndarray] | None = None, allow_unfinished: bool = False) -> dict:
    """Precision/recall/F1 of the run's detections on a split (TP/FP/FN summed); writes detect_{split}.json,
    a precision-recall plot and overlays (green: true positives, red: false positives, blue: misses). With a
    nucleus-type `classifier` run, each detection is typed and scored per class against the classed points.
    A run that has not finished training is refused unless `allow_unfinished`; data loaded here that differs
    from the split the run was trained and scored on gets a warning on standard error."""

    device = str(resolve_device(device))  # auto: CUDA when there is one
    run_dir = Path(run_dir)
    check_finished(run_dir, allow_unfinished)
    params = read_params(run_dir)
    tolerance = tolerance or params["tolerance"]
    cfg = run_config(run_dir)  # the checkpoint's header only: a caller that made the maps needs no network
    info, splits = data or load_data(cfg)
    images = [im for im in splits.get(split, []) if im.points is not None]
    if not images:
        raise UserError(f"--split {split}: no images with points")
    if data is None:  # loaded here: perhaps not the data the run saw
        warn_if_data_changed(run_dir, split, splits[split])
    maps = maps if maps is not None else centre_maps(detection_maps(run_dir, params, device)[1], images)
    # peaks above the lowest threshold once; the detections at any threshold are those scoring at least it
    low = [find_peaks(m, params["sigma"], params["min_distance"], min(THRESHOLDS) - 1e-6) for m in maps]
    found = [peaks[peaks[:, 2] >= params["threshold"] - 1e-9] for peaks in low]
    result = {**detection_scores([(f[:, :2], im.points) for f, im in zip(found, images)], tolerance),
              "split": split, "tolerance": tolerance, "images": len(images), **params}
    sweep, best = threshold_sweep([(peaks, im.points) for peaks, im in zip(low, images)], tolerance, THRESHOLDS)
    result["sweep"], result["best_threshold_on_this_split"] = sweep, best
    if classifier:
        truth = typed_truth(cfg, split)
        result["typed"] = per_class_f1([(f[:, :2], classify_detections(classifier, im.image, f, device), *truth[im.name])
                                        for f, im in zip(found, images)], tolerance)
    write_json(run_dir / f"detect_{split}.json", result)
    detection_pictures(run_dir, split, images, low, params["threshold"], tolerance)
    plot_pr(sweep, params["threshold"], run_dir / "plots" / f"precision_recall_{split}.png")
    if overlays:
        for f, im in zip(found, images):
            draw(im, f[:, :2], tolerance, run_dir / "overlays" / f"{im.name}.png")
    return result


def plot_pr(sweep: list[dict], chosen: float, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([r["recall"] for r in sweep], [r["precision"] for r in sweep], marker=".")
    pick = min(sweep, key=lambda r: abs(r["threshold"] - chosen))
    ax.plot(pick["recall"], pick["precision"], "o", color="red", label=f"threshold {chosen} (F1 {pick['f1']:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1), title="detections vs threshold")
    ax.legend(loc="lower left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw(im: SegImage, found: np.ndarray, tolerance: float, path: Path) -> None:
    """The image with true positives (green), false positives (red) and missed centres (blue) marked."""
    pairs, *_ = match(found, im.points, tolerance)
    matched_pred, matched_truth = {i for i, _ in pairs}, {j for _, j in pairs}
    marks = [(p, (0, 200, 0) if i in matched_pred else (230, 0, 0)) for i, p in enumerate(found)]
    marks += [(t, (0, 90, 255)) for j, t in enumerate(im.points) if j not in matched_truth]
    draw_marks(im.image, marks, path)


def train_detector(cfg, out: str | Path, tolerance: float = 6.0, resume: bool = False,
                   console: Console | None = None, overrides: dict | None = None,
                   tta: tuple[str, ...] = ("none", "d4"), score_test: bool = True) -> dict:
    """Train the centre-map network (segment train on discs or proximity maps), then `tune_detector` on the
    device it trained on (every choice on the validation images); then, with `score_test` and test images
    with points, score the finished detector on them once (RUN/detect_test.json)."""

    console = console or make_console()
    result = train_segmentation(cfg, out, resume=resume, console=console, overrides=overrides, tolerance=tolerance,
                                score_test=score_test)
    device = str(resolve_device((overrides or {}).get("device") or cfg.device))
    data = load_data(run_config(out))  # as trained (a resumed run keeps its config), read once for both
    result["detect_val"] = tune_detector(out, tolerance, console, tta, device, data=data)
    if score_test and any(im.points is not None for im in data[1].get("test", [])):
        r = result["detect_test"] = evaluate_detection(out, "test", tolerance, device, data=data)
        console.print(f"test detections: precision {r['precision']:.4f} recall {r['recall']:.4f} F1 {r['f1']:.4f} "
                      f"({r['images']} images no choice saw)")
    return result


def tune_detector(run_dir: str | Path, tolerance: float = 6.0, console: Console | None = None,
                  tta: tuple[str, ...] = ("none", "d4"), device: str = "auto", allow_unfinished: bool = False,
                  data=None) -> dict:
    """Choose a trained detector's peak parameters, and whether to average its maps over the `tta` test-time
    augmentations, on the validation images (RUN/detect.json); returns their scores (RUN/detect_val.json).
    A run that has not finished training is refused unless `allow_unfinished`. `data`: the run's (info,
    splits) when the caller has loaded them."""

    device = str(resolve_device(device))  # auto: CUDA when there is one
    console = console or make_console()
    out = Path(run_dir)
    check_finished(out, allow_unfinished)
    model, meta = load_segmenter(out, device=device)
    info, splits = data or load_data(SegmentConfig.from_dict(meta["config"]))
    val = [im for im in splits["val"] if im.points is not None]
    if not val:
        raise UserError(f"{out}: no validation images with points to choose the peak parameters on")
    maps = {t: centre_maps(MapMaker(model, meta, tta=t, device=device), val) for t in tta}  # to choose and to score
    params = tune_run(out, maps, val, tolerance, console)
    r = evaluate_detection(out, "val", tolerance, device, data=(info, splits), maps=maps[params["tta"]],
                           allow_unfinished=True)  # checked above
    console.print(f"validation detections: precision {r['precision']:.4f} recall {r['recall']:.4f} F1 {r['f1']:.4f} "
                  f"(within {tolerance} px) -> {out}")
    return r


@functools.lru_cache(maxsize=1)
def nucleus_classifier(classifier_run: str, modified: int, device: str = "cpu"):
    """(model, meta, TrainConfig, patch side as the dataset cut it) of a nucleus-type classifier run; cached
    by path and checkpoint time (`modified`), so typing the detections of many images loads it once."""

    model, meta = load_model(classifier_run, device=device)
    cfg = TrainConfig.from_dict(meta["config"])
    return model, meta, cfg, native_side(cfg)


def classify_detections(classifier_run: str | Path, image: np.ndarray, found: np.ndarray,
                        device: str = "cpu") -> list[str]:
    """The class of each detection (N, 2+) (row, col, ...) in image (C, H, W) in [0, 1], by a nucleus-type
    classifier run (medconv train --dataset crchistophenotypes): its square patch around each detection,
    mirror-padded at the borders as in training."""

    path = checkpoint_path(classifier_run)
    model, meta, cfg, side = nucleus_classifier(str(path.resolve()), path.stat().st_mtime_ns if path.exists() else 0,
                                                device)
    half = side // 2
    padded = np.pad(image, ((0, 0), (half, half), (half, half)), mode="reflect")
    limits = np.array(image.shape[1:]) - 1  # nearest pixel, halves up (as the nucleus patches), kept inside
    centres = np.clip(np.floor(found[:, :2] + 0.5), 0, limits).astype(int)
    patches = np.stack([padded[:, y:y + side, x:x + side] for y, x in centres]) if len(centres) else \
        np.zeros((0, image.shape[0], side, side), np.float32)
    if len(patches) == 0:
        return []
    batch = torch.from_numpy((patches * 255).round().astype(np.uint8))
    if cfg.resize and cfg.resize != side:
        mode = fit_mode(cfg.resize_mode, "resize")
        batch = resized(ImageSet(batch, torch.zeros(len(batch), 1)), cfg.resize, mode).images
    scores = predict_scores(model, batch, meta["mean"], meta["std"], meta["task"], device)
    return [meta["classes"][i] for i in scores.argmax(1)]
