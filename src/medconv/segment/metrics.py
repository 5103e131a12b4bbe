"""Segmentation metrics: ISBI 2012 pixel and Rand error, V_rand and V_info, Dice/IoU, AJI and object-level Dice.

Images are (H, W) arrays. Binary masks are bool or 0/1; label and instance maps are non-negative
integers with 0 = background (or boundary). Pairs of labels are counted with a sparse contingency
table, so a 512 x 512 image costs a few milliseconds per table.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage, sparse

from medconv.errors import UserError

#: Thresholds the ISBI 2012 Fiji script sweeps (0.0 to 1.0 in steps of 0.1).
ISBI_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.linspace(0.0, 1.0, 11), 10))
_STRUCTURE = {4: ndimage.generate_binary_structure(2, 1), 8: ndimage.generate_binary_structure(2, 2)}
_MEMBRANE_HINT = "; for ISBI label PNGs (255 = cell, 0 = membrane) pass label == 0"


def _check_shapes(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise UserError(f"{names}: shapes {a.shape} and {b.shape} differ; they must be equal")


def _binary(x, name: str, hint: str = "") -> np.ndarray:
    """x as a bool array; only bool or 0/1 input is accepted (a 0/255 image has no agreed polarity)."""
    x = np.asarray(x)
    if x.dtype == bool:
        return x
    if not ((x == 0) | (x == 1)).all():
        raise UserError(f"{name} must be a binary mask (bool or 0/1), got values {np.unique(x)[:6]}{hint}")
    return x.astype(bool)


def _compact(labels: np.ndarray, name: str) -> np.ndarray:
    """Flat non-negative int64 labels, renumbered 1..K (0 kept as 0) when the ids are sparse."""
    x = np.asarray(labels).ravel()
    if not np.issubdtype(x.dtype, np.integer) and x.dtype != bool:
        raise UserError(f"{name} must be an integer label image, got dtype {x.dtype}")
    x = x.astype(np.int64)
    if x.size and x.min() < 0:
        raise UserError(f"{name} has negative labels; expected 0 = background and 1, 2, ... = objects")
    if x.size and x.max() > x.size:
        uniq, x = np.unique(x, return_inverse=True)
        x = x.ravel() + (uniq[0] != 0)
    return x


def _contingency(a: np.ndarray, b: np.ndarray) -> sparse.coo_matrix:
    """n_ij = number of pixels with label i in a and j in b (a, b: flat non-negative ints)."""
    shape = (int(a.max(initial=0)) + 1, int(b.max(initial=0)) + 1)
    table = sparse.csr_matrix((np.ones(a.size, np.int64), (a, b)), shape=shape)  # sums duplicates
    return table.tocoo()


def _best_per(key: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Index of the highest score for each distinct key (ties: the first entry)."""
    order = np.lexsort((-score, key))
    keys = key[order]
    return order[np.r_[True, keys[1:] != keys[:-1]]] if keys.size else order


def pixel_error(prob_or_pred, truth, threshold: float = 0.5, roi=None) -> float:
    """Fraction of pixels whose binary label differs from truth at one threshold.

    prob_or_pred: (H, W) probabilities or a binary mask, binarised as ``prob_or_pred > threshold``
    (as Fiji's PixelError.getMetricValue does); truth: (H, W) binary mask of the same class; roi:
    optional (H, W) bool mask of the pixels to score. The figure the ISBI 2012 leaderboard calls
    pixel error is another one: see isbi_pixel_error.
    """
    pred = np.asarray(prob_or_pred) > threshold
    truth = _binary(truth, "truth")
    _check_shapes(pred, truth, "pixel_error prediction and truth")
    wrong = pred != truth
    if roi is not None:
        roi = _binary(roi, "roi")
        _check_shapes(roi, truth, "pixel_error roi and truth")
        wrong = wrong[roi]
    if wrong.size == 0:
        raise UserError("pixel_error: the roi selects no pixels")
    return float(wrong.mean())


def isbi_pixel_error(prob, truth_membrane, thresholds: Iterable[float] = ISBI_THRESHOLDS, roi=None) -> dict:
    """ISBI 2012 leaderboard pixel error: 1 - the best F-score of cell pixels over thresholds.

    prob: (H, W) membrane probability (or (N, H, W) / list for a stack); truth_membrane: same shape,
    bool or 0/1 with True = membrane. As the challenge's Fiji scorer
    (trainableSegmentation.metrics.PixelError.getPixelErrorMaximalFScore, thresholds 0.0-1.0 in
    steps of 0.1): the positive class is the cells (label 255), predicted where the cell
    probability ``1 - prob > t``; true positives, false positives and false negatives are pooled over
    the slices; F = 2 TP / (2 TP + FP + FN), 0 where nothing is predicted. Because cells are 78% of
    ISBI's pixels, this is well below the fraction of wrong pixels (pixel_error). Returns
    {"isbi_pixel_error", "pixel_best_threshold"} (ties: the first threshold). `roi` (see roi_slices): only the
    pixels inside count.
    """
    probs, membranes = _membrane_stack(prob, truth_membrane, "isbi_pixel_error")
    rois = roi_slices(roi, probs, "isbi_pixel_error")
    cells = [~m & r for m, r in zip(membranes, rois)]
    n_cells = sum(int(c.sum()) for c in cells)
    best = None
    for t in thresholds:
        predicted = [((1 - p) > t) & r for p, r in zip(probs, rois)]
        tp = sum(int((q & c).sum()) for q, c in zip(predicted, cells))
        called = sum(int(q.sum()) for q in predicted)
        f = 2 * tp / (called + n_cells) if tp else 0.0  # 2 TP / (2 TP + FP + FN)
        if best is None or f > best[0]:
            best = (f, float(t))
    if best is None:
        raise UserError("isbi_pixel_error: thresholds is empty")
    return {"isbi_pixel_error": float(1 - best[0]), "pixel_best_threshold": best[1]}


def _counts(seg: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Foreground-restricted counts of flat label arrays seg, truth (0 = background / predicted boundary).

    Only pixels with truth != 0 count. Returns (n_ij: pixels of each pair of predicted segment i and true cell j,
    s_i: sizes of the predicted segments, t_j: sizes of the true cells, n0: predicted-boundary pixels, seg == 0).
    Each of the n0 pixels is a segment of its own (the ISBI 2012 scorer's rule), which the scores add in.
    """
    inside = truth != 0
    s, t = seg[inside], truth[inside]
    boundary = s == 0
    s_in, t_in = s[~boundary], t[~boundary]
    pairs = _contingency(s_in, t_in).data.astype(np.float64)
    return pairs, np.bincount(s_in).astype(np.float64), np.bincount(t).astype(np.float64), float(boundary.sum())


def _rand_sums(counts) -> np.ndarray:
    """[sum n_ij^2, sum s_i^2, sum t_j^2] of _counts (a boundary pixel: a singleton, 1 in both of the first two)."""
    pairs, seg_sizes, truth_sizes, n0 = counts
    return np.array([(pairs ** 2).sum() + n0, (seg_sizes ** 2).sum() + n0, (truth_sizes ** 2).sum()])


def _xlogx(c: np.ndarray) -> float:
    c = c[c > 0]
    return float((c * np.log(c)).sum())


def _info_sums(counts) -> np.ndarray:
    """[sum n_ij log n_ij, sum s_i log s_i, sum t_j log t_j, n] of _counts (singletons add 1 log 1 = 0, and 1 to n)."""
    pairs, seg_sizes, truth_sizes, _ = counts
    return np.array([_xlogx(pairs), _xlogx(seg_sizes), _xlogx(truth_sizes), truth_sizes.sum()])


def _v_rand(sums: np.ndarray) -> tuple[float, float, float]:
    """(F, split, merge) from [sum p_ij^2, sum s_i^2, sum t_j^2] (the n^2 normalisation cancels)."""
    pairs, seg_sq, truth_sq = sums
    if truth_sq == 0:
        raise UserError("Rand score: the ground truth has no foreground (cell) pixels")
    split, merge = pairs / truth_sq, pairs / seg_sq
    return 2 * split * merge / (split + merge), split, merge


def _v_info(sums: np.ndarray) -> tuple[float, float, float]:
    """(F, split, merge) from _info_sums: split = I(S;T) / H(S), merge = I(S;T) / H(T), F their harmonic mean.

    With counts c summing to n, H = log n - sum c log c / n. A zero entropy leaves its ratio undefined; it is taken
    as 1 (that side cannot err), so a one-segment prediction of several cells scores F = 0, as in Fiji (which
    gives 0 also where both entropies are 0, one true cell predicted as one segment; here 1).
    """
    joint, seg, truth, n = sums
    if n == 0:
        raise UserError("information score: the ground truth has no foreground (cell) pixels")
    h_st, h_s, h_t = (np.log(n) - x / n for x in (joint, seg, truth))
    mutual = max(h_s + h_t - h_st, 0.0)
    split = min(mutual / h_s, 1.0) if h_s > 1e-12 else 1.0
    merge = min(mutual / h_t, 1.0) if h_t > 1e-12 else 1.0
    return (2 * split * merge / (split + merge) if split + merge else 0.0), split, merge


def rand_f_score(seg, truth) -> float:
    """Foreground-restricted Rand F-score V_rand of label image seg against truth, both (H, W).

    Only pixels with truth != 0 count. seg == 0 marks predicted boundary: each such pixel is its
    own singleton segment (as in the ISBI 2012 scorer), so it never joins a pair. See rand_error.
    """
    seg, truth = np.asarray(seg), np.asarray(truth)
    _check_shapes(seg, truth, "rand_f_score seg and truth")
    return float(_v_rand(_rand_sums(_counts(_compact(seg, "seg"), _compact(truth, "truth"))))[0])


def info_f_score(seg, truth) -> dict:
    """Foreground-restricted information score of label image seg against truth, both (H, W) int.

    Same pixels and boundary rule as rand_f_score; see info_score. Returns {"v_info", "v_info_split",
    "v_info_merge"}.
    """
    seg, truth = np.asarray(seg), np.asarray(truth)
    _check_shapes(seg, truth, "info_f_score seg and truth")
    f, split, merge = _v_info(_info_sums(_counts(_compact(seg, "seg"), _compact(truth, "truth"))))
    return {"v_info": float(f), "v_info_split": float(split), "v_info_merge": float(merge)}


def _membrane_stack(prob, truth_membrane, caller: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Membrane probability maps and bool membrane masks as matching lists of (H, W) slices, checked."""
    probs, truths = _slices(prob, "prob"), _slices(truth_membrane, "truth_membrane")
    if len(probs) != len(truths):
        raise UserError(f"{caller}: {len(probs)} probability maps but {len(truths)} truth masks")
    for p, t in zip(probs, truths):
        _check_shapes(p, t, f"{caller} prob and truth_membrane")
        if not np.isfinite(p).all():
            raise UserError(f"{caller}: prob contains NaN or infinite values")
    return probs, [_binary(t, "truth_membrane", _MEMBRANE_HINT) for t in truths]


def roi_slices(roi, like: list[np.ndarray], caller: str) -> list[np.ndarray]:
    """Regions of interest as one (H, W) bool mask per slice of `like`: roi None (every pixel), one (H, W) mask
    (a single slice), an (N, H, W) stack, or a list with one mask or None per slice."""
    if roi is None:
        return [np.ones(a.shape, bool) for a in like]
    items = list(roi) if isinstance(roi, (list, tuple)) or np.ndim(roi) == 3 else [roi]
    if len(items) != len(like):
        raise UserError(f"{caller}: {len(like)} maps but {len(items)} regions of interest")
    out = [np.ones(a.shape, bool) if r is None else _binary(r, "roi") for r, a in zip(items, like)]
    for r, a in zip(out, like):
        _check_shapes(r, a, f"{caller} roi and map")
    return out


def _slices(x, name: str) -> list[np.ndarray]:
    """(H, W), (N, H, W) or a list of (H, W) arrays as a list of 2-D arrays."""
    items = list(x) if isinstance(x, (list, tuple)) or np.ndim(x) == 3 else [x]
    items = [np.asarray(a) for a in items]
    if not items or any(a.ndim != 2 for a in items):
        raise UserError(f"{name} must be an (H, W) image, an (N, H, W) stack or a list of (H, W) images")
    return items


def _sweep(prob, truth_membrane, thresholds: Iterable[float], connectivity: int, caller: str,
           roi=None) -> list[tuple]:
    """[(t, [_counts of each slice])] for each threshold: cells ``prob < t`` and the true cells ``~truth_membrane``,
    each labelled into connected components in 2-D (see rand_error); true-cell pixels outside the `roi` (see
    roi_slices) become 0, so they are not counted."""
    if connectivity not in _STRUCTURE:
        raise UserError(f"connectivity must be 4 or 8, got {connectivity}")
    probs, membranes = _membrane_stack(prob, truth_membrane, caller)
    structure = _STRUCTURE[connectivity]
    truths = [(ndimage.label(~m, structure=structure)[0] * r).ravel()
              for m, r in zip(membranes, roi_slices(roi, probs, caller))]
    sweep = [(float(t), [_counts(ndimage.label(p < t, structure=structure)[0].ravel(), g)
                         for p, g in zip(probs, truths)]) for t in thresholds]
    if not sweep:
        raise UserError(f"{caller}: thresholds is empty")
    return sweep


def _best(sweep: list[tuple], sums, score, per_slice: bool) -> tuple[tuple[float, float, float], float]:
    """The best (F, split, merge) over the sweep's thresholds, and its threshold (ties: the first). `per_slice`: the
    mean of the slices' scores (macro average); else one score of the sums pooled over the slices (micro)."""
    best = None
    for t, counts in sweep:
        per = [sums(c) for c in counts]
        value = tuple(np.mean([score(s) for s in per], axis=0)) if per_slice else score(np.sum(per, axis=0))
        if best is None or value[0] > best[0][0]:
            best = (tuple(float(v) for v in value), t)
    return best


def rand_error(prob, truth_membrane, thresholds: Iterable[float] = ISBI_THRESHOLDS,
               connectivity: int = 4, per_slice: bool = False, roi=None) -> dict:
    """ISBI 2012 Rand error: 1 - the best foreground-restricted Rand F-score V_rand over thresholds.

    prob: (H, W) membrane probability (or (N, H, W) / list for a stack); truth_membrane: same
    shape, bool or 0/1 with True = membrane. Follows the challenge's Fiji scorer
    (trainableSegmentation.metrics.RandError, foreground-restricted N^2 statistics; Arganda-Carreras
    et al. 2015, Front. Neuroanat. 9:142):

    1. cells are ``prob < t`` (Fiji's ``(1 - prob) > 1 - t`` on its cell-probability image);
       ground-truth cells are ``~truth_membrane``; both are labelled into 4-connected components
       (Fiji calls ``Utils.connectedComponents(image, 4)``); pass ``connectivity=8`` to deviate.
    2. Only pixels inside ground-truth cells count (n of them). p_ij = n_ij / n joins predicted
       segment i and true segment j; s_i, t_j are its row and column sums.
    3. A predicted-boundary pixel inside a true cell is neither dropped nor pooled into one
       background segment: it is its own singleton segment (Fiji adds sum_i p_i0 / n to both
       sum p_ij^2 and sum s_i^2), so it breaks pairs and lowers the split score.
    4. V_split = sum p_ij^2 / sum t_j^2, V_merge = sum p_ij^2 / sum s_i^2,
       V_rand = 2 V_split V_merge / (V_split + V_merge). A stack pools the sums over its slices
       (each slice labelled in 2-D), as Fiji pools TP/FP/FN for the 2012 figure
       (getForegroundRestrictedRandIndexMaximalFScore). ``per_slice=True`` averages the slices' V_rand
       (and split, merge) instead, as the current leaderboard's V_rand does (getMaximalVRandAfterThinning
       with perSliceAverage true); one slice gives the same either way.

    The leaderboard scores thinned maps (see segment.evaluate.challenge_thinned); this function scores the map
    it is given. Returns {"rand_error", "v_rand" (= 1 - rand_error), "best_threshold", "v_rand_split",
    "v_rand_merge"} at the best threshold (ties: the first in ``thresholds``). `roi` (see roi_slices): only the
    true-cell pixels inside count (the cells are labelled on the whole slice first).
    """
    sweep = _sweep(prob, truth_membrane, thresholds, connectivity, "rand_error", roi)
    return _rand_result(*_best(sweep, _rand_sums, _v_rand, per_slice))


def _rand_result(score: tuple[float, float, float], t: float) -> dict:
    f, split, merge = score
    return {"rand_error": 1 - f, "v_rand": f, "best_threshold": t, "v_rand_split": split, "v_rand_merge": merge}


def info_score(prob, truth_membrane, thresholds: Iterable[float] = ISBI_THRESHOLDS,
               connectivity: int = 4, per_slice: bool = True, roi=None) -> dict:
    """The ISBI 2012 leaderboard's information-theoretic score V_info: its best over thresholds.

    prob: (H, W) membrane probability, or (N, H, W) / a list of (H, W) for a stack; truth_membrane: the same shapes,
    bool or 0/1, True = membrane. Thresholds and connectivity as rand_error, with the same labelling, the same
    pixels (inside true cells only) and the same rule for predicted-boundary pixels (each a segment of its own).
    With S the predicted segments and T the true cells over those n pixels (Arganda-Carreras et al. 2015, Front.
    Neuroanat. 9:142; Fiji's trainableSegmentation.metrics.VariationOfInformation.foregroundRestrictedFscore):
    V_info_split = I(S;T) / H(S) (below 1 when true cells are split), V_info_merge = I(S;T) / H(T) (below 1 when
    they are merged), V_info = their harmonic mean. Fiji averages the slices' V_info (``per_slice=True``, the
    default); ``per_slice=False`` scores the stack as one partition whose segments never span slices.
    Returns {"v_info", "v_info_split", "v_info_merge", "best_threshold"} (ties: the first threshold). `roi`: as
    rand_error.
    """
    sweep = _sweep(prob, truth_membrane, thresholds, connectivity, "info_score", roi)
    (f, split, merge), t = _best(sweep, _info_sums, _v_info, per_slice)
    return {"v_info": f, "v_info_split": split, "v_info_merge": merge, "best_threshold": t}


def isbi_scores(prob, truth_membrane, thresholds: Iterable[float] = ISBI_THRESHOLDS, connectivity: int = 4,
                roi=None) -> dict:
    """The 2012 Rand error and the current leaderboard's V_rand and V_info of membrane maps, from one labelling.

    prob, truth_membrane: as rand_error. Returns rand_error's keys for the 2012 figure (stack pooled: "rand_error",
    "best_threshold", "v_rand_split", "v_rand_merge"), then the leaderboard's, each the mean of the slices' scores
    at its own best threshold: "v_rand", "v_rand_threshold", "v_info", "v_info_split", "v_info_merge",
    "v_info_threshold". For one slice "v_rand" is 1 - "rand_error"; for a stack it may differ. `roi`: as
    rand_error.
    """
    sweep = _sweep(prob, truth_membrane, thresholds, connectivity, "isbi_scores", roi)
    out = _rand_result(*_best(sweep, _rand_sums, _v_rand, per_slice=False))
    (v_rand, _, _), v_rand_t = _best(sweep, _rand_sums, _v_rand, per_slice=True)
    (f, split, merge), t = _best(sweep, _info_sums, _v_info, per_slice=True)
    return {**out, "v_rand": v_rand, "v_rand_threshold": v_rand_t, "v_info": f, "v_info_split": split,
            "v_info_merge": merge, "v_info_threshold": t}


def dice_iou(pred, truth, classes: Sequence[int], roi=None) -> dict[int, dict[str, float]]:
    """Per-class Dice (= F1) and IoU of label images pred, truth (H, W) int, inside roi (bool).

    Returns {class: {"dice": d, "iou": j}}; NaN where the class is absent from both images.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    _check_shapes(pred, truth, "dice_iou pred and truth")
    if roi is not None:
        roi = _binary(roi, "roi")
        _check_shapes(roi, truth, "dice_iou roi and truth")
        pred, truth = pred[roi], truth[roi]
    out = {}
    for c in classes:
        p, t = pred == c, truth == c
        inter, total = float((p & t).sum()), float(p.sum() + t.sum())
        out[c] = {"dice": 2 * inter / total if total else float("nan"),
                  "iou": inter / (total - inter) if total else float("nan")}
    return out


def _instance_overlaps(pred, truth):
    """Overlap table of two instance maps: (truth ids, pred ids, intersections, truth areas, pred areas)."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    _check_shapes(pred, truth, "instance maps pred and truth")
    p, t = _compact(pred, "pred_instances"), _compact(truth, "truth_instances")
    both = (p > 0) & (t > 0)
    table = _contingency(t[both], p[both])
    t_area, p_area = np.bincount(t).astype(np.float64), np.bincount(p).astype(np.float64)
    t_area[0] = p_area[0] = 0
    return table.row, table.col, table.data.astype(np.float64), t_area, p_area


def aggregated_jaccard_index(pred_instances, truth_instances) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017, IEEE TMI) of two (H, W) instance maps.

    Each true object G_i takes the predicted object S_j of largest IoU with it (any S_j, even one
    already taken); C += |G_i & S_j|, U += |G_i | S_j|. A G_i that overlaps nothing adds |G_i| to
    U, and every predicted object never taken adds its area to U. AJI = C / U (NaN if both empty).
    """
    ti, pj, inter, t_area, p_area = _instance_overlaps(pred_instances, truth_instances)
    union = t_area[ti] + p_area[pj] - inter
    best = _best_per(ti, inter / union)
    c, u = inter[best].sum(), union[best].sum()
    unmatched_t = np.ones(t_area.size, bool)
    unmatched_t[ti[best]] = False
    unused_p = np.ones(p_area.size, bool)
    unused_p[pj[best]] = False
    u += t_area[unmatched_t].sum() + p_area[unused_p].sum()
    return float(c / u) if u else float("nan")


def object_dice(pred_instances, truth_instances) -> float:
    """Object-level Dice (Sirinukunwattana et al. 2017, GlaS) of two (H, W) instance maps.

    D = 1/2 [sum_i g_i Dice(G_i, S*(G_i)) + sum_j s_j Dice(G*(S_j), S_j)], with g_i, s_j the object's
    share of all true / predicted object area and S*(G_i) the predicted object of largest overlap
    with G_i (G*(S_j) likewise); no overlap gives Dice 0. NaN if both maps are empty, 0 if one is.
    """
    ti, pj, inter, t_area, p_area = _instance_overlaps(pred_instances, truth_instances)
    total_t, total_p = t_area.sum(), p_area.sum()
    if not total_t or not total_p:
        return float("nan") if total_t == total_p else 0.0
    dice = 2 * inter / (t_area[ti] + p_area[pj])
    by_truth, by_pred = _best_per(ti, inter), _best_per(pj, inter)
    truth_term = (t_area[ti[by_truth]] * dice[by_truth]).sum() / total_t
    pred_term = (p_area[pj[by_pred]] * dice[by_pred]).sum() / total_p
    return float(0.5 * (truth_term + pred_term))
