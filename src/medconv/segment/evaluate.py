"""`medconv segment evaluate` and `segment predict`: whole-image posteriors, metrics, maps on disk.

Metrics (pooled over the split's images): pixel error, per-class Dice/F1 and IoU, and, where class 1
is a boundary class (ISBI's membranes), the challenge's 2012 Rand error (1 - best foreground-restricted
Rand F-score over thresholds, pooled) and the current leaderboard's V_rand and V_info (slice means; with --thin
also after thinning); where the data has object ids (CPM-15, --mask-type instances), the Aggregated Jaccard
Index and object-level Dice of watershed-separated predicted objects (mean over images). Every metric, and
every choice made on validation (threshold, thinning seeds), counts only the pixels inside each image's roi.
Outputs of predict: NAME_prob.png (16-bit foreground probability, or .tif float32), NAME_mask.png (labels
after post-processing), NAME_overlay.png.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from ..data.fingerprint import fingerprint
from ..data.images import parse_window, prepare_image, read_image
from ..data.segmentation import SegImage, SegInfo
from ..errors import UserError
from ..fileio import image_files, own_files, write_json, writes_here
from ..infer.shards import barrier, everyone, gather_in_order, local_device, my_share
from ..progress import make_console
from ..training.checkpoint import load_model, read_checkpoint
from ..training.engine import resolve_device
from ..training.runstate import check_finished, warn_if_data_changed, write_fingerprints
from .config import SegmentConfig
from .data import load_data
from .maps import MapMaker
from .metrics import (
    ISBI_THRESHOLDS,
    aggregated_jaccard_index,
    dice_iou,
    isbi_pixel_error,
    isbi_scores,
    object_dice,
)
from .pictures import segmentation_pictures
from .postprocess import (
    binary_cleanup,
    choose_thinning,
    choose_threshold,
    overlay,
    save_labels,
    save_probability,
    smooth,
    thin_membranes,
    watershed_instances,
)

BOUNDARY_CLASSES = ("membrane", "boundary")


def segments_boundaries(meta: dict) -> bool:
    """Whether a run's foreground is a boundary between objects (two classes, the second a membrane)."""
    return len(meta["classes"]) == 2 and meta["classes"][1] in BOUNDARY_CLASSES


def check_thinnable(meta: dict, run_dir) -> None:
    """--thin needs membranes between cells: one clear line otherwise."""
    if not segments_boundaries(meta):
        raise UserError(f"--thin thins membranes between cells: {run_dir} segments {meta['classes'][-1]!r}, not one of "
                        f"{', '.join(BOUNDARY_CLASSES)}")


def load_segmenter(run_dir: str | Path, which: str = "best", device: str = "cpu"):
    model, meta = load_model(run_dir, which, device)
    if meta.get("task") != "segmentation":
        raise UserError(f"{run_dir} is not a segmentation run (made by medconv segment train)")
    return model, meta


def split_metrics(labelled: list[SegImage], probs: list[np.ndarray], classes: list[str], objects: bool = True,
                  threshold: float = 0.5) -> dict:
    """Metrics of the posterior maps (K, H, W) of labelled images, pooled over them; `objects` adds the
    Rand error (boundary classes) and AJI / object Dice (where the data has instances). Two classes:
    foreground is probability > `threshold` (0.5: the argmax, ISBI's pixel error)."""
    truth = np.concatenate([im.mask.ravel() for im in labelled])
    roi = np.concatenate([(im.roi if im.roi is not None else np.ones_like(im.mask, bool)).ravel() for im in labelled])
    if len(classes) == 2:  # at 0.5 the argmax of the two posteriors: ISBI's pixel error
        pred = np.concatenate([(p[1] > threshold).ravel() for p in probs]).astype(truth.dtype)
    else:
        pred = np.concatenate([p.argmax(0).ravel() for p in probs])
    per_class = dice_iou(pred, truth, list(range(len(classes))), roi)
    out = {"n": len(labelled), "pixel_error": float(((pred != truth) & roi).sum() / roi.sum()),
           "per_class": {classes[c]: v for c, v in per_class.items()}}
    if len(classes) == 2:
        out["f1"] = per_class[1]["dice"]
        if objects and classes[1] in BOUNDARY_CLASSES:
            maps, membranes = [p[1] for p in probs], [im.mask == 1 for im in labelled]
            out.update(isbi_scores(maps, membranes, roi=rois(labelled)))
            out.update(isbi_pixel_error(maps, membranes, roi=rois(labelled)))
        if objects and all(im.instances is not None for im in labelled):  # objects: separated by watershed, then matched
            out.update(object_scores(labelled, probs, threshold))
    else:
        out["f1"] = float(np.nanmean([per_class[c]["dice"] for c in range(1, len(classes))]))
    return out


def rois(labelled: list[SegImage]) -> list[np.ndarray | None]:
    """Each image's region of interest, (H, W) bool or None (all of it)."""
    return [im.roi for im in labelled]


def in_roi(labels: np.ndarray, roi: np.ndarray | None) -> np.ndarray:
    """An (H, W) instance map with the objects' pixels outside the roi set to 0 (background)."""
    return labels if roi is None else np.where(roi, labels, 0)


def object_scores(labelled: list[SegImage], probs: list[np.ndarray], threshold: float = 0.5) -> dict:
    """AJI and object Dice (means over the images) of the objects a watershed separates in foreground =
    probability > `threshold` against the images' object ids, both cut to each image's roi."""
    found = [in_roi(watershed_instances(p[1], threshold), im.roi) for p, im in zip(probs, labelled)]
    truth = [in_roi(im.instances, im.roi) for im in labelled]
    return {"aji": float(np.mean([aggregated_jaccard_index(f, t) for f, t in zip(found, truth)])),
            "object_dice": float(np.mean([object_dice(f, t) for f, t in zip(found, truth)]))}


def metrics_name(split: str, tta: str = "none") -> str:
    """metrics_{split}.json, or metrics_{split}_tta-{tta}.json for maps averaged over test-time views."""
    return f"metrics_{split}.json" if tta == "none" else f"metrics_{split}_tta-{tta}.json"


def evaluate_segmentation(run_dir: str | Path, split: str = "test", method: str = "auto", which: str = "best",
                          device: str = "auto", data: tuple[SegInfo, dict] | None = None,
                          choose: bool = False, tta: str = "none", thin: bool = False,
                          allow_unfinished: bool = False, pictures: bool = True) -> dict:
    """Metrics of a run's checkpoint on a split; writes RUN_DIR/metrics_name(split, tta). With `choose` (binary
    tasks), the foreground threshold is chosen on these same maps: metrics["threshold"], RUN/threshold.json.
    Binary tasks also get metrics["at_threshold"]: every metric again with foreground = probability > the
    threshold chosen on validation (RUN/threshold.json, when there is one); for boundary classes the Rand error,
    V_rand and V_info at that threshold rather than their best over thresholds on these maps.
    `tta` (dense networks): none, flip or d4 views averaged. `thin` (boundary classes): also the scores after
    thin_membranes, its seeds chosen on the validation maps of the same `tta` (metrics["thinned"]), and after the
    challenge's own thinning (metrics["challenge_thinned"], see challenge_thinned). A run that has not finished
    training is refused unless `allow_unfinished`; data loaded here that differs from the split the run was
    trained and scored on gets a warning on standard error."""

    device = str(resolve_device(device))  # auto: CUDA when there is one
    check_finished(run_dir, allow_unfinished, which)
    model, meta = load_segmenter(run_dir, which, device)
    boundary = segments_boundaries(meta)
    if thin:
        check_thinnable(meta, run_dir)
    info, splits = data if data is not None else load_data(SegmentConfig.from_dict(meta["config"]))
    if split not in splits or not splits[split]:
        raise UserError(f"--split {split}: no images (splits: {', '.join(k for k, v in splits.items() if v)})")
    if data is None:  # loaded here: perhaps not the data the run saw
        warn_if_data_changed(run_dir, split, splits[split])
    maker = MapMaker(model, meta, method, tta, device=device)
    labelled = [im for im in splits[split] if im.mask is not None]
    if not labelled:
        raise UserError(f"--split {split}: no labelled images")
    tic = time.time()
    probs = [maker(torch.from_numpy(im.image)).numpy() for im in labelled]
    seconds = (time.time() - tic) / len(labelled)
    metrics = {**split_metrics(labelled, probs, meta["classes"]), "seconds_per_image": seconds, "split": split,
               "method": maker.method, "checkpoint": which, "tta": tta}
    if choose and len(meta["classes"]) == 2:
        metrics["threshold"] = choose_foreground_threshold(Path(run_dir), meta["classes"], labelled, probs)
    chosen = Path(run_dir) / "threshold.json"
    if len(meta["classes"]) == 2 and chosen.exists():
        threshold = json.loads(chosen.read_text())["threshold"]
        at = split_metrics(labelled, probs, meta["classes"], objects=not boundary, threshold=threshold)
        if boundary:  # the Rand error, V_rand and V_info at the validation's threshold, not at their best on these maps
            scores = isbi_scores([p[1] for p in probs], [im.mask == 1 for im in labelled], thresholds=[threshold],
                                 roi=rois(labelled))
            at.update({k: v for k, v in scores.items() if not k.endswith("threshold")})
        metrics["at_threshold"] = {"threshold": threshold, **at}
    if thin:
        path = thinning_path(Path(run_dir), tta)
        stale = not path.exists() or "challenge_threshold" not in json.loads(path.read_text())
        if split != "val" and stale:  # choose the thinning parameters on validation first
            val = [im for im in splits.get("val", []) if im.mask is not None]
            if not val:
                raise UserError("--thin chooses its seeds on the validation images, and this run has none")
            choose_seeds(Path(run_dir), tta, val, [maker(torch.from_numpy(im.image)).numpy() for im in val])
        if split == "val":
            choose_seeds(Path(run_dir), tta, labelled, probs)
        metrics["thinned"] = thinned_scores(Path(run_dir), tta, labelled, probs)
        metrics["challenge_thinned"] = challenge_thinned(labelled, probs,
                                                         json.loads(path.read_text())["challenge_threshold"])
    write_json(Path(run_dir) / metrics_name(split, tta), {k: v for k, v in metrics.items() if k != "threshold"})
    if pictures:  # per-image scores and the worst images, for the report
        segmentation_pictures(Path(run_dir), metrics_name(split, tta), labelled, probs, metrics, meta["classes"])
    return metrics


def choose_foreground_threshold(out: Path, classes: list[str], labelled: list[SegImage], probs: list) -> dict:
    """The foreground threshold with the best score on these (validation) maps (Rand for boundary classes,
    else F1), counting the pixels inside each image's roi; saved as RUN/threshold.json for `segment predict`."""
    metric = "rand" if classes[1] in BOUNDARY_CLASSES else "f1"
    chosen = choose_threshold([p[1] for p in probs], [im.mask == 1 for im in labelled], metric, rois=rois(labelled))
    chosen = {"threshold": chosen["threshold"], "metric": metric, "val_score": chosen["score"]}
    write_json(out / "threshold.json", chosen)
    return chosen


def thinning_path(out: Path, tta: str = "none") -> Path:
    return out / ("thinning.json" if tta == "none" else f"thinning_tta-{tta}.json")


def choose_seeds(out: Path, tta: str, labelled: list[SegImage], probs: list[np.ndarray]) -> dict:
    """Every thinning parameter, chosen on these (validation) maps: thin_membranes' seed threshold and minimum seed
    size with the lowest Rand error, and the threshold at which the challenge's thinning gives the best V_rand
    (challenge_thinned); saved as RUN/thinning[_tta-T].json (maps of another test-time augmentation get their own).
    Only the pixels inside each image's roi count."""
    chosen = choose_thinning([p[1] for p in probs], [im.mask == 1 for im in labelled], rois=rois(labelled))
    seeds = {k: chosen[k] for k in ("seed_threshold", "min_seed")}
    seeds["challenge_threshold"] = challenge_thinned(labelled, probs)["v_rand_threshold"]
    write_json(thinning_path(out, tta), seeds)
    return seeds


def thinned_scores(out: Path, tta: str, labelled: list[SegImage], probs: list[np.ndarray]) -> dict:
    """The 2012 Rand error (with its split and merge scores), V_rand and V_info of the membrane maps after
    thin_membranes with the seeds in RUN/thinning[_tta-T].json (a binary map: no threshold to sweep)."""
    seeds = json.loads(thinning_path(out, tta).read_text())
    thin = [thin_membranes(p[1], seeds["seed_threshold"], seeds["min_seed"]) for p in probs]
    scores = isbi_scores(thin, [im.mask == 1 for im in labelled], thresholds=[0.5], roi=rois(labelled))
    return {"seed_threshold": seeds["seed_threshold"], "min_seed": seeds["min_seed"],
            **{k: v for k, v in scores.items() if not k.endswith("threshold")}}


def challenge_thinned(labelled: list[SegImage], probs: list[np.ndarray], threshold: float | None = None) -> dict:
    """V_rand and V_info after the challenge's own thinning, which has no parameter but the threshold: at each t of
    the ISBI grid the cells (membrane probability < t) all become seeds of a watershed of the binarised map, which
    grows them over the membrane pixels until they meet, leaving one-pixel lines (thin_membranes of the binary
    map). Each figure is its best over t, as the leaderboard's scorer takes it (Fiji's RandError /
    VariationOfInformation getMaximalV{Rand,Info}AfterThinning, slice means; its own watershed may place a line a
    pixel away from skimage's). `threshold` (one chosen on validation): "at_threshold", the figures at that t. Only
    the pixels inside each image's roi count."""
    membranes = [im.mask == 1 for im in labelled]
    grid = list(ISBI_THRESHOLDS) + ([threshold] if threshold is not None and threshold not in ISBI_THRESHOLDS else [])
    by_t = {t: isbi_scores([thin_membranes((p[1] >= t).astype(np.float32), 0.5) for p in probs], membranes,
                           thresholds=[0.5], roi=rois(labelled)) for t in grid}
    best = {key: max(ISBI_THRESHOLDS, key=lambda t: sign * by_t[t][key])  # ties: the first threshold
            for key, sign in (("v_rand", 1), ("v_info", 1), ("rand_error", -1))}
    out = {"v_rand": by_t[best["v_rand"]]["v_rand"], "v_rand_threshold": best["v_rand"],
           "v_info": by_t[best["v_info"]]["v_info"], "v_info_threshold": best["v_info"],
           "rand_error": by_t[best["rand_error"]]["rand_error"], "best_threshold": best["rand_error"]}
    if threshold is not None:
        out["at_threshold"] = {"threshold": threshold,
                               **{k: by_t[threshold][k] for k in ("v_rand", "v_info", "rand_error")}}
    return out


def finish_segmentation(out: Path, info: SegInfo, splits: dict, console: Console, device: str = "cpu") -> dict:
    """After training: metrics of the best checkpoint on val (and test, when labelled); data.json (the
    fingerprints of `splits`) and metrics.json (last: it marks the run finished)."""

    _, last = read_checkpoint(out / "checkpoints" / "last.safetensors")
    result = {"dataset": info.name, "arch": last["arch"], "mode": last["mode"], "epochs": last["epoch"],
              "best_epoch": last["best_epoch"], "train_seconds": round(sum(r["seconds"] for r in last["history"]), 1)}
    scored = [s for s in ("val", "test") if any(im.mask is not None for im in splits.get(s, []))]
    for split in scored:  # pictures of the last split scored (test when labelled): the report's
        result[split] = evaluate_segmentation(out, split, device=device, data=(info, splits), choose=split == "val",
                                              allow_unfinished=True, pictures=split == scored[-1])
    if "threshold" in result.get("val", {}):
        result["threshold"] = result["val"].pop("threshold")
    write_fingerprints(out, fingerprint({k: v for k, v in splits.items() if v}))
    write_json(out / "metrics.json", result)
    if any(im.target is not None for ims in splits.values() for im in ims):  # soft (proximity) targets: pixel
        summary = "proximity maps: the detection scores follow"  # figures at 0.5 would say nothing of detection
    else:
        scored = [s for s in ("val", "test") if s in result]  # one threshold (or none) for both: said once
        summary = ", ".join(f"{s} {summary_figures(result[s], say=i == 0)}" for i, s in enumerate(scored))
    console.print(f"best epoch {result['best_epoch']}: {summary}  ->  {out}", highlight=False, soft_wrap=True)
    return result


def summary_figures(m: dict, say: bool = True) -> str:
    """One split's figures for a printed summary line, from its metrics `m`: at the threshold `segment predict`
    uses, the one chosen on validation (m["at_threshold"], from RUN/threshold.json) when there is one, else at 0.5
    (two classes) or the argmax; with `say`, followed by which (threshold_said). Then the ISBI pixel error, a best
    over thresholds by definition."""
    at = m.get("at_threshold", m)
    best = "" if "at_threshold" in m else " (best threshold)"  # without a chosen threshold: the best on these maps
    return (f"pixel error {at['pixel_error']:.4f}  F1 {at['f1']:.4f}"
            + (f"  Rand error{best} {at['rand_error']:.4f}" if "rand_error" in at else "")
            + (f"  AJI {at['aji']:.4f}  object Dice {at['object_dice']:.4f}" if "aji" in at else "")
            + (f" {threshold_said(m)}" if say else "")
            + (f"  ISBI pixel error (1 - best cell F) {m['isbi_pixel_error']:.4f}" if "isbi_pixel_error" in m else ""))


def threshold_said(m: dict) -> str:
    """Which threshold summary_figures(m) are at, in words."""
    if "at_threshold" in m:
        return f"at threshold {m['at_threshold']['threshold']:g} (chosen on validation, as segment predict uses)"
    return "at threshold 0.5" if len(m["per_class"]) == 2 else "at the argmax"


def predict_segmentation(run_dir: str | Path, inputs: list[str], out_dir: str | Path, method: str = "auto",
                         threshold: float | None = None, sigma: float = 0.0, opening: int = 0, fill_holes: bool = False,
                         min_size: int = 0, instances: bool = False, tta: str = "none", device: str = "auto",
                         console: Console | None = None, closing: int = 0, fmt: str = "png",
                         thin: bool = False, allow_unfinished: bool = False) -> list[dict]:
    """Posterior maps, label masks and overlays for image files; returns one row per image. `threshold` None:
    the one chosen on the run's validation images (threshold.json), else 0.5. `fmt`: png (16-bit) or tif.
    `thin` (membranes): the mask is thin_membranes of the map, with the seeds chosen on validation. A run that
    has not finished training is refused unless `allow_unfinished`. Under torchrun each rank maps its share of the
    files and writes their outputs (infer.shards); every rank returns all rows, in input order."""

    device = local_device(str(resolve_device(device)))  # auto: CUDA when there is one (under torchrun: its GPU)
    console = console or make_console()
    check_finished(run_dir, allow_unfinished)
    model, meta = load_segmenter(run_dir, device=device)
    maker = MapMaker(model, meta, method, tta, device)
    out_dir = Path(out_dir)
    seeds = None
    if thin:
        check_thinnable(meta, run_dir)
        if not (path := thinning_path(Path(run_dir), tta)).exists():
            raise UserError(f"--thin: no seeds chosen for {run_dir} with --tta {tta}; run medconv segment evaluate "
                            f"{run_dir} --split val --thin{'' if tta == 'none' else ' --tta ' + tta} first")
        seeds = json.loads(path.read_text())
    threshold = foreground_threshold(run_dir, threshold)
    files = image_files(inputs)
    existed = all(everyone(out_dir.exists()))  # under torchrun: looked at by every rank before any writes
    rows, failure = [], None
    try:
        with own_files():  # under torchrun: each rank maps its share of the files and writes their maps
            for path in my_share(files):
                rows.append(predict_one(path, maker, meta, out_dir, fmt, sigma, seeds, threshold, opening, closing,
                                        fill_holes, min_size, instances, console))
    except UserError as exc:
        failure = exc
    try:
        return gather_in_order(rows, failure)  # every rank's rows, in input order (raises any rank's failure)
    except UserError:  # a bad input among them: take back what this call wrote, so nothing is half done
        for row in rows:
            for name in (f"_prob.{fmt}", "_mask.png", "_overlay.png"):
                (out_dir / f"{Path(row['image']).stem}{name}").unlink(missing_ok=True)
        barrier()  # under torchrun: every rank has taken back its maps before rank 0 looks at the folder
        if writes_here() and not existed and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise


def foreground_threshold(run_dir: str | Path, threshold: float | None = None) -> float:
    """The foreground cut of `segment predict`'s masks (probability > it): `threshold` when given, else the one
    chosen on the run's validation images (RUN/threshold.json), else 0.5."""
    if threshold is not None:
        return threshold
    chosen = Path(run_dir) / "threshold.json"
    return json.loads(chosen.read_text())["threshold"] if chosen.exists() else 0.5


def predict_one(path: Path, maker: MapMaker, meta: dict, out_dir: Path, fmt: str, sigma: float, seeds: dict | None,
                threshold: float, opening: int, closing: int, fill_holes: bool, min_size: int, instances: bool,
                console: Console) -> dict:
    """One image's posterior map, label mask and overlay in out_dir (NAME_prob, NAME_mask, NAME_overlay)."""
    array = read_image(path, parse_window(meta["config"].get("window")))  # as the run read its images
    image = prepare_image(array, meta["in_channels"], array.shape[:2])  # (C, H, W), no resizing
    tic = time.time()
    probs = maker(image).numpy()
    seconds = time.time() - tic
    if probs.shape[0] == 2:
        fg = smooth(probs[1], sigma) if sigma else probs[1]
        save_probability(out_dir / f"{path.stem}_prob.{fmt}", fg)
        mask = (thin_membranes(fg, seeds["seed_threshold"], seeds["min_seed"]) > 0.5 if seeds else
                binary_cleanup(fg > threshold, opening=opening, closing=closing, fill_holes=fill_holes,
                               min_size=min_size))
        labels = watershed_instances(mask.astype(float)) if instances else mask.astype(np.uint8)
    else:
        labels = probs.argmax(0).astype(np.uint8)
    save_labels(out_dir / f"{path.stem}_mask.png", labels)
    picture = image.numpy().transpose(1, 2, 0)
    overlay(picture[..., 0] if picture.shape[2] == 1 else picture, labels if instances or labels.max() > 1 else labels.astype(bool),
            out_dir / f"{path.stem}_overlay.png")
    console.print(f"{path.name}: {maker.method} posterior map in {seconds:.2f} s -> {out_dir}/{path.stem}_*.png")
    return {"image": str(path), "seconds": round(seconds, 3), "method": maker.method}
