"""Post-processing of probability maps: smoothing, thresholds, cleanup, instances, and saving.

Probability maps are (H, W) floats in [0, 1]; masks (H, W) bool; label maps (H, W) int with
0 = background. Morphology comes from scipy.ndimage and scikit-image; every write is atomic.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import color, feature, morphology, segmentation

from medconv.errors import UserError
from medconv.fileio import atomic_write
from medconv.segment.metrics import ISBI_THRESHOLDS, _binary, _check_shapes, rand_error, roi_slices

_CONNECTIVITY = {4: 1, 8: 2}


def smooth(prob: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smoothed copy of an (H, W) probability map (float32); sigma in pixels, 0 = copy."""
    prob = np.asarray(prob, dtype=np.float32)
    return ndimage.gaussian_filter(prob, sigma) if sigma > 0 else prob.copy()


def choose_threshold(probs: Sequence[np.ndarray], truths: Sequence[np.ndarray], metric: str = "f1",
                     candidates: Sequence[float] | None = None,
                     rois: Sequence[np.ndarray | None] | None = None) -> dict:
    """Threshold that maximises a metric over validation images (lists of (H, W) arrays).

    metric "f1": F1 of ``prob > t`` against the binary truths, TP/FP/FN pooled over the images;
    default candidates 0.05, 0.10, ..., 0.95. metric "rand": probs are membrane probabilities,
    truths membrane masks, score = pooled foreground-restricted Rand F-score (see rand_error);
    default candidates the ISBI grid. `rois`: None, or per image an (H, W) bool region of interest
    (or None: all of it); only the pixels inside count. Returns {"threshold", "score", "scores": {t: score}}.
    """
    probs = [np.asarray(p, dtype=np.float64) for p in probs]
    truths = [_binary(t, "truth") for t in truths]
    if not probs or len(probs) != len(truths):
        raise UserError(f"choose_threshold: {len(probs)} probability maps but {len(truths)} truths")
    for p, t in zip(probs, truths):
        _check_shapes(p, t, "choose_threshold probability map and truth")
    rois = roi_slices(list(rois) if rois is not None else None, probs, "choose_threshold")
    if metric == "f1":
        candidates = np.round(np.arange(0.05, 1.0, 0.05), 10) if candidates is None else candidates
        inside = [(p[r], y[r]) for p, y, r in zip(probs, truths, rois)]  # (n,) in-roi pixels of each image
        scores = {float(t): _f1(inside, t) for t in candidates}
    elif metric == "rand":
        candidates = ISBI_THRESHOLDS if candidates is None else candidates
        scores = {float(t): 1 - rand_error(probs, truths, thresholds=[t], roi=rois)["rand_error"] for t in candidates}
    else:
        raise UserError(f"choose_threshold: unknown metric {metric!r}; expected 'f1' or 'rand'")
    if not scores:
        raise UserError("choose_threshold: candidates is empty")
    best = max(scores, key=scores.get)  # first of equal scores
    return {"threshold": best, "score": scores[best], "scores": scores}


def _f1(pixels: Sequence[tuple[np.ndarray, np.ndarray]], t: float) -> float:
    """F1 of ``prob > t`` over (probabilities (n,), bool truths (n,)) pairs, TP/FP/FN pooled; 1 when both are empty."""
    tp = sum(float(((p > t) & y).sum()) for p, y in pixels)
    fp = sum(float(((p > t) & ~y).sum()) for p, y in pixels)
    fn = sum(float(((p <= t) & y).sum()) for p, y in pixels)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def binary_cleanup(mask: np.ndarray, opening: int = 0, closing: int = 0, fill_holes: bool = False,
                   min_size: int = 0) -> np.ndarray:
    """Cleaned copy of an (H, W) bool mask, in this order: opening and closing with a disk of the
    given radius (pixels beyond the border count as foreground, so edge objects are not eaten),
    hole filling, then removal of 8-connected objects smaller than min_size pixels."""
    out = _binary(mask, "mask").copy()
    if opening > 0:
        disk = morphology.disk(opening)
        out = ndimage.binary_dilation(ndimage.binary_erosion(out, disk, border_value=1), disk)
    if closing > 0:
        disk = morphology.disk(closing)
        out = ndimage.binary_erosion(ndimage.binary_dilation(out, disk), disk, border_value=1)
    if fill_holes:
        out = ndimage.binary_fill_holes(out)
    if min_size > 0:
        labels = connected_components(out)
        out &= (np.bincount(labels.ravel()) >= min_size)[labels]
    return out


def connected_components(mask: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """(H, W) int32 labels 1..K of the 4- or 8-connected objects of a bool mask (0 = background)."""
    if connectivity not in _CONNECTIVITY:
        raise UserError(f"connectivity must be 4 or 8, got {connectivity}")
    structure = ndimage.generate_binary_structure(2, _CONNECTIVITY[connectivity])
    return ndimage.label(_binary(mask, "mask"), structure=structure)[0].astype(np.int32)


def watershed_instances(prob_or_mask: np.ndarray, threshold: float = 0.5, min_distance: int = 5,
                        footprint: np.ndarray | None = None) -> np.ndarray:
    """Split touching objects: (H, W) int32 instance labels from a probability map or mask.

    Foreground is ``prob_or_mask > threshold``; markers are local maxima of its Euclidean distance
    transform at least min_distance apart (or within footprint, see skimage.feature.peak_local_max),
    one per object at least; the watershed of the negated distance grows them inside the mask.
    """
    mask = np.asarray(prob_or_mask) > threshold
    if mask.ndim != 2:
        raise UserError(f"watershed_instances expects an (H, W) map, got shape {mask.shape}")
    objects = connected_components(mask)
    distance = ndimage.distance_transform_edt(mask)
    peaks = feature.peak_local_max(distance, min_distance=min_distance, footprint=footprint,
                                   labels=objects, exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    missed = np.setdiff1d(np.unique(objects[mask]), objects[tuple(peaks.T)])  # objects without a peak
    for k, obj in enumerate(missed, start=len(peaks) + 1):
        markers[objects == obj] = k
    labels = segmentation.watershed(-distance, markers, mask=mask)
    return segmentation.relabel_sequential(labels)[0].astype(np.int32)


# seeds: low thresholds too (a seed need only lie inside its cell; the watershed finds the membrane), small
# seeds dropped as specks inside membranes
SEED_THRESHOLDS = (0.02, 0.05) + tuple(float(t) for t in np.round(np.arange(0.1, 1.0, 0.1), 10))
MIN_SEED_SIZES = (0, 25, 100, 400)


def thin_membranes(prob: np.ndarray, seed_threshold: float, min_seed: int = 0) -> np.ndarray:
    """(H, W) float32 map of one-pixel membranes from an (H, W) membrane probability map.

    Seeds are the 4-connected components of ``prob < seed_threshold`` (cells), those smaller than
    `min_seed` pixels dropped; a watershed of the probability map grows them until they meet, and the
    map is 1 on the lines where they meet, 0 elsewhere. Which cells stay apart is decided by the
    threshold alone; the thick band of membrane pixels between them is handed to the cells it
    borders, so the Rand error no longer counts those pixels as singleton segments.
    """
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 2:
        raise UserError(f"thin_membranes expects an (H, W) map, got shape {prob.shape}")
    seeds = connected_components(prob < seed_threshold, connectivity=4)
    if min_seed > 0:
        seeds[(np.bincount(seeds.ravel()) < min_seed)[seeds] & (seeds > 0)] = 0
    if not seeds.any():
        return np.ones_like(prob)
    cells = segmentation.watershed(prob, seeds, connectivity=1)
    # a pixel is membrane where its right or lower neighbour lies in another cell: one pixel between any two
    # 4-adjacent cells (skimage's watershed_line also cuts seedless pockets off the cells)
    line = np.zeros(prob.shape, bool)
    line[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    line[:-1, :] |= cells[:-1, :] != cells[1:, :]
    return line.astype(np.float32)


def choose_thinning(probs: Sequence[np.ndarray], membranes: Sequence[np.ndarray],
                    thresholds: Sequence[float] = SEED_THRESHOLDS, min_seeds: Sequence[int] = MIN_SEED_SIZES,
                    rois: Sequence[np.ndarray | None] | None = None) -> dict:
    """The seed threshold and minimum seed size of thin_membranes with the lowest pooled Rand error on these
    (validation) maps, counting the pixels inside `rois` (per image (H, W) bool or None; None: all):
    {"seed_threshold", "min_seed", "rand_error"} (ties: the first in the grids)."""
    best = None
    for min_seed in min_seeds:
        for t in thresholds:
            thinned = [thin_membranes(p, t, min_seed) for p in probs]
            error = rand_error(thinned, membranes, thresholds=[0.5], roi=rois)["rand_error"]
            if best is None or error < best["rand_error"]:
                best = {"seed_threshold": float(t), "min_seed": int(min_seed), "rand_error": error}
    if best is None:
        raise UserError("choose_thinning: the threshold or seed-size grid is empty")
    return best


def _png_or_tiff(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        raise UserError(f"{path}: unsupported suffix {suffix!r}; use .png, .tif or .tiff")
    return "PNG" if suffix == ".png" else "TIFF"


def save_probability(path: str | Path, prob: np.ndarray) -> None:
    """Save an (H, W) probability map: 16-bit PNG of round(prob * 65535), or float32 TIFF (.tif)."""
    prob = np.asarray(prob, dtype=np.float64)
    if prob.ndim != 2 or not np.isfinite(prob).all() or prob.min(initial=0) < 0 or prob.max(initial=0) > 1:
        raise UserError(f"{path}: expected an (H, W) probability map with values in [0, 1]")
    if _png_or_tiff(path) == "PNG":
        image = Image.fromarray(np.round(prob * 65535).astype(np.uint16))
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
        return
    try:
        import tifffile
    except ImportError:
        raise UserError(f"{path}: writing TIFF needs the tifffile package, which is not installed; "
                        "save as .png or pip install tifffile") from None
    atomic_write(path, lambda tmp: tifffile.imwrite(tmp, prob.astype(np.float32)))


def save_labels(path: str | Path, labels: np.ndarray) -> None:
    """Save an (H, W) label map as PNG: uint8 when labels <= 255, else uint16 (<= 65535)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise UserError(f"{path}: expected an (H, W) integer label map, got {labels.dtype} {labels.shape}")
    if Path(path).suffix.lower() != ".png":
        raise UserError(f"{path}: label maps are saved as .png")
    if labels.size and (labels.min() < 0 or labels.max() > 65535):
        raise UserError(f"{path}: labels must lie in 0..65535 for a PNG, got {labels.min()}..{labels.max()}")
    dtype = np.uint8 if labels.max(initial=0) <= 255 else np.uint16
    image = Image.fromarray(labels.astype(dtype))
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def _to_rgb8(image: np.ndarray) -> np.ndarray:
    """(H, W) grey or (H, W, 3) image as (H, W, 3) uint8 (non-uint8 images are min-max scaled)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise UserError(f"overlay: expected an (H, W) grey or (H, W, 3) RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = image.astype(np.float64)
        lo, hi = image.min(), image.max()
        image = np.round(255 * (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)).astype(np.uint8)
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image.copy()


def overlay(image: np.ndarray, mask_or_labels: np.ndarray, path: str | Path, alpha: float = 0.35,
            boundary_color: tuple[int, int, int] = (255, 255, 0)) -> np.ndarray:
    """Write an RGB PNG of image with a mask's boundaries or coloured instances over it.

    A bool mask is drawn as its boundaries in boundary_color; an int label map (0 = background)
    fills each instance with its own colour at opacity alpha and draws the boundaries on top.
    Returns the (H, W, 3) uint8 picture.
    """
    if Path(path).suffix.lower() != ".png":
        raise UserError(f"{path}: overlays are saved as .png")
    rgb = _to_rgb8(image)
    labels = np.asarray(mask_or_labels)
    _check_shapes(rgb[..., 0], labels, "overlay image and mask_or_labels")
    if labels.dtype != bool:
        inside = labels != 0
        colours = 255 * color.label2rgb(labels, bg_label=0)[inside]  # one colour per instance
        rgb[inside] = np.round((1 - alpha) * rgb[inside] + alpha * colours).astype(np.uint8)
    rgb[segmentation.find_boundaries(labels, mode="inner")] = boundary_color
    picture = Image.fromarray(rgb)
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))
    return rgb
