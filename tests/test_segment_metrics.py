"""Segmentation metrics and post-processing: hand-worked cases and real ISBI 2012 / CPM-15 labels."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import morphology

from medconv.errors import UserError
from medconv.segment.metrics import (
    aggregated_jaccard_index,
    dice_iou,
    isbi_pixel_error,
    object_dice,
    pixel_error,
    rand_error,
    rand_f_score,
)
from medconv.segment.postprocess import (
    binary_cleanup,
    choose_threshold,
    connected_components,
    overlay,
    save_labels,
    save_probability,
    smooth,
    thin_membranes,
    watershed_instances,
)

CROSS = ndimage.generate_binary_structure(2, 1)


def isbi_membrane(data_root, k: str = "00") -> np.ndarray:
    """ISBI 2012 training label k as a membrane mask (the PNG has 255 = cell, 0 = membrane)."""
    return np.array(Image.open(data_root / "isbi2012_em" / "train" / "label" / f"{k}.png")) == 0


def cpm_instances(data_root, k: str = "01") -> np.ndarray:
    return np.array(Image.open(data_root / "cpm15_nuclei" / "labels" / f"image{k}_label.png")).astype(np.int64)


# ---------------------------------------------------------------- pixel error

def test_pixel_error_real_and_hand(data_root):
    mem = isbi_membrane(data_root)
    assert pixel_error(mem.astype(float), mem) == 0.0
    assert pixel_error(~mem, mem) == 1.0
    truth = np.array([[0, 1], [1, 1]])
    prob = np.array([[0.2, 0.9], [0.4, 0.6]])  # binarised (> 0.5): [[0, 1], [0, 1]] -> one of four wrong
    assert pixel_error(prob, truth) == 0.25
    assert pixel_error(prob, truth, threshold=0.3) == 0.0
    assert pixel_error(np.array([[0.5]]), np.array([[0]])) == 0.0  # strictly above the threshold, as Fiji
    roi = np.array([[True, True], [False, True]])  # the wrong pixel is outside the roi
    assert pixel_error(prob, truth, roi=roi) == 0.0
    with pytest.raises(UserError, match="label == 0"):
        rand_error(mem.astype(float), np.where(mem, 0, 255))  # raw PNG values are refused


def test_isbi_pixel_error_hand_and_pooled(data_root):
    # cells (the positive class) are the bottom row; cell probability 1 - prob
    truth = np.array([[1, 1], [0, 0]])
    prob = 1 - np.array([[0.35, 0.75], [0.55, 0.95]])
    # t 0.0-0.3: all four called cells, F = 4/6; t 0.4-0.5: three, F = 4/5 (best); t 0.6-0.7: F = 2/4;
    # t 0.8-0.9: F = 2/3; t 1.0: none, F = 0
    r = isbi_pixel_error(prob, truth)
    assert r["isbi_pixel_error"] == pytest.approx(0.2) and r["pixel_best_threshold"] == pytest.approx(0.4)
    assert pixel_error(prob, truth) == 0.25  # the fraction wrong at 0.5 is another figure
    # a stack pools the counts: a perfect slice beside that one gives F = 8 / (8 + 1), not the mean of F
    stack = isbi_pixel_error(np.stack([prob, truth.astype(float)]), np.stack([truth, truth]))
    assert stack["isbi_pixel_error"] == pytest.approx(1 / 9)
    # on a real label: perfect maps score 0; calling everything membrane scores 1 (no cell predicted)
    mem = isbi_membrane(data_root)
    assert isbi_pixel_error(mem.astype(float), mem)["isbi_pixel_error"] == 0.0
    assert isbi_pixel_error(np.ones(mem.shape), mem)["isbi_pixel_error"] == 1.0


# ---------------------------------------------------------------- Rand error

def brute_force_v_rand(seg: np.ndarray, truth: np.ndarray) -> float:
    """V_rand by counting ordered pixel pairs inside truth's foreground; seg 0 pixels pair only with themselves."""
    s, t = seg[truth != 0], truth[truth != 0]
    same_t = same_s = both = 0
    for i, j in itertools.product(range(s.size), repeat=2):
        st = t[i] == t[j]
        ss = i == j or (s[i] == s[j] and s[i] != 0)
        same_t, same_s, both = same_t + st, same_s + ss, both + (st and ss)
    split, merge = both / same_t, both / same_s
    return 2 * split * merge / (split + merge)


def test_rand_f_score_matches_pair_counting():
    rng = np.random.default_rng(0)
    for _ in range(5):
        seg, truth = rng.integers(0, 4, (5, 6)), rng.integers(0, 3, (5, 6))
        assert rand_f_score(seg, truth) == pytest.approx(brute_force_v_rand(seg, truth), abs=1e-12)
    assert rand_f_score(truth * 1000 + 7 * (truth > 0), truth) == pytest.approx(1.0)  # sparse ids renumbered


def test_rand_error_hand_split_and_merge():
    # Split: truth is one 2x5 cell (n = 10, t = [10]); the prediction draws a membrane down column 2,
    # giving cells of 4 and 4 pixels plus 2 predicted-boundary pixels inside the true cell, which count
    # as singletons: sum p^2 = 4^2 + 4^2 + 2 = 34, sum s^2 = 34, sum t^2 = 100 (all / n^2).
    # split = 34/100 = 0.34, merge = 34/34 = 1, F = 2*0.34/1.34 = 0.507463, error = 0.492537.
    truth = np.zeros((2, 5), bool)
    prob = np.zeros((2, 5))
    prob[:, 2] = 1.0
    r = rand_error(prob, truth)
    assert r["v_rand_split"] == pytest.approx(0.34) and r["v_rand_merge"] == pytest.approx(1.0)
    assert r["rand_error"] == pytest.approx(1 - 0.68 / 1.34)
    # (Were those 2 pixels dropped instead, split would be 32/64 = 0.5; pooled into one segment, 36/100.)
    # Merge: truth has a membrane down column 2 -> two 4-pixel cells (n = 8, sum t^2 = 32); the
    # prediction has no membrane: one segment holding all 8 foreground pixels (sum s^2 = 64),
    # sum p^2 = 4^2 + 4^2 = 32. split = 1, merge = 0.5, F = 2/3, error = 1/3.
    r = rand_error(np.zeros((2, 5)), prob.astype(bool))
    assert (r["v_rand_split"], r["v_rand_merge"]) == pytest.approx((1.0, 0.5))
    assert r["rand_error"] == pytest.approx(1 / 3)
    # Connectivity: truth membrane is a 4x4 staircase (diagonal + the pixels right of it), so the true
    # cells are the 3-pixel upper and 6-pixel lower triangles under either connectivity. The predicted
    # membrane is only the diagonal: with 4-connected cells (the challenge's rule) it still separates
    # them, error 0; with 8-connected cells (0,1) and (1,0) touch and the two merge: sum p^2 = 9 + 36,
    # sum t^2 = 45, sum s^2 = 9^2 = 81, merge = 5/9, F = 5/7, error = 2/7.
    diagonal = np.eye(4, dtype=bool)
    staircase = diagonal | np.eye(4, k=1, dtype=bool)
    assert rand_error(diagonal.astype(float), staircase)["rand_error"] == 0.0
    assert rand_error(diagonal.astype(float), staircase, connectivity=8)["rand_error"] == pytest.approx(2 / 7)


def test_rand_error_on_isbi_label(data_root):
    mem = isbi_membrane(data_root)
    perfect = rand_error(mem.astype(float), mem)
    assert perfect["rand_error"] == 0.0 and perfect["v_rand_split"] == perfect["v_rand_merge"] == 1.0
    # Thinning the membrane by one pixel while keeping it closed (padding = membrane, so lines that
    # reach the border stay attached) moves only GT-membrane pixels: the score ignores them.
    thinned = morphology.thin(np.pad(mem, 1, constant_values=True), max_num_iter=1)[1:-1, 1:-1]
    assert (mem & ~thinned).sum() > 10000
    assert rand_error(thinned.astype(float), mem)["rand_error"] < 1e-12
    # Dilating it by one pixel only shrinks cells: a small split error, never a merge.
    dilated = ndimage.binary_dilation(mem, CROSS)
    thick = rand_error(dilated.astype(float), mem)
    assert 0 < thick["rand_error"] < 0.08 and thick["v_rand_merge"] == 1.0
    # Deleting the few membrane pixels between the largest cell and its largest neighbour merges them.
    cells, _ = ndimage.label(~mem, CROSS)
    sizes = np.bincount(cells.ravel())
    sizes[0] = 0
    a = sizes.argmax()
    ring = ndimage.binary_dilation(cells == a, CROSS, iterations=4)
    neighbours = np.setdiff1d(np.unique(cells[ring]), [0, a])
    b = neighbours[sizes[neighbours].argmax()]
    gap = mem & ring & ndimage.binary_dilation(cells == b, CROSS, iterations=4)
    merged = mem & ~gap
    joined, _ = ndimage.label(~merged, CROSS)
    assert len(np.unique(joined[(cells == a) | (cells == b)])) == 1
    merge = rand_error(merged.astype(float), mem)
    assert merge["v_rand_split"] == 1.0 and merge["v_rand_merge"] < 0.97 and merge["rand_error"] > 0.02
    # Per changed pixel, one merge costs far more than a uniformly thicker boundary.
    per_pixel_merge = merge["rand_error"] / pixel_error(merged, mem)
    assert per_pixel_merge > 100 * thick["rand_error"] / pixel_error(dilated, mem)
    # Plain erosion, unlike thinning, opens the thin membranes and merges many cells.
    assert rand_error(ndimage.binary_erosion(mem, CROSS).astype(float), mem)["rand_error"] > 0.3


def test_rand_error_picks_best_threshold_and_pools_stacks(data_root):
    mem = isbi_membrane(data_root)
    soft = np.where(mem, 0.75, 0.15)  # cells are prob < t: t in (0.15, 0.75] is perfect
    r = rand_error(soft, mem)
    assert r["rand_error"] == 0.0 and 0.15 < r["best_threshold"] <= 0.75
    stack = rand_error(np.stack([soft, np.zeros_like(soft)]), np.stack([mem, mem]))
    single = rand_error(np.zeros_like(soft), mem)
    assert 0 < stack["rand_error"] < single["rand_error"]


# ---------------------------------------------------------------- Dice / IoU

def test_dice_iou_hand():
    pred = np.array([[1, 1, 0], [2, 2, 0]])
    truth = np.array([[1, 0, 0], [2, 2, 2]])
    out = dice_iou(pred, truth, classes=[0, 1, 2, 3])
    assert out[1] == {"dice": pytest.approx(2 / 3), "iou": pytest.approx(1 / 2)}  # 1 shared of 2 and 1
    assert out[2] == {"dice": pytest.approx(4 / 5), "iou": pytest.approx(2 / 3)}  # 2 shared of 2 and 3
    assert out[0]["dice"] == pytest.approx(2 * 1 / 4)  # class 0: pixels {(0,2),(1,2)} vs {(0,1),(0,2)}
    assert np.isnan(out[3]["dice"]) and np.isnan(out[3]["iou"])
    roi = np.array([[True, False, True], [True, True, False]])
    assert dice_iou(pred, truth, [1, 2], roi=roi)[2]["dice"] == 1.0


# ---------------------------------------------------------------- AJI and object Dice

def test_aji_and_object_dice_hand():
    # One row of 12 pixels. Truth: G1 = 0-3, G2 = 6-9, G3 = 11. Prediction: S1 = 0-2, S2 = 3-6, S3 = 7-9.
    # Overlaps: G1&S1 = 3 (IoU 3/4), G1&S2 = 1 (1/7), G2&S2 = 1 (1/7), G2&S3 = 3 (3/4).
    # AJI: G1->S1 (C 3, U 4), G2->S3 (C 3, U 4), G3 matches nothing (U += 1), S2 unused (U += 4):
    #      AJI = 6 / 13.
    # Object Dice: truth side, weights 4/9, 4/9, 1/9: Dice(G1,S1) = Dice(G2,S3) = 6/7, G3 -> 0:
    #      16/21. Prediction side, weights 3/10, 4/10, 3/10: S1 -> 6/7, S2 -> 2*1/8 = 1/4, S3 -> 6/7:
    #      43/70. Mean: (16/21 + 43/70) / 2 = 289/420.
    truth = np.array([[1, 1, 1, 1, 0, 0, 2, 2, 2, 2, 0, 3]])
    pred = np.array([[1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 0, 0]])
    assert aggregated_jaccard_index(pred, truth) == pytest.approx(6 / 13)
    assert object_dice(pred, truth) == pytest.approx(289 / 420)
    assert object_dice(pred * 0, truth) == 0.0 and aggregated_jaccard_index(pred * 0, truth) == 0.0


def test_aji_and_object_dice_on_cpm15(data_root):
    truth = cpm_instances(data_root)
    assert aggregated_jaccard_index(truth, truth) == 1.0 and object_dice(truth, truth) == 1.0
    renumbered = np.where(truth > 0, truth.max() + 1000 - truth, 0)  # ids do not matter
    assert aggregated_jaccard_index(renumbered, truth) == 1.0
    left, right = truth[:, :-1], truth[:, 1:]
    touching = (left != right) & (left > 0) & (right > 0)
    a, b = left[touching][0], right[touching][0]
    merged = np.where(truth == b, a, truth)
    dropped = np.where(truth == a, 0, truth)
    for pred in (merged, dropped):
        assert aggregated_jaccard_index(pred, truth) < 0.999
        assert object_dice(pred, truth) < 0.999


# ---------------------------------------------------------------- post-processing

def test_watershed_splits_overlapping_discs():
    yy, xx = np.mgrid[:40, :60]
    discs = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 100) | ((yy - 20) ** 2 + (xx - 36) ** 2 <= 100)
    assert connected_components(discs).max() == 1
    labels = watershed_instances(discs.astype(float), min_distance=5)
    assert labels.max() == 2 and set(np.unique(labels[discs])) == {1, 2}
    assert labels[20, 20] != labels[20, 36] and (labels > 0).sum() == discs.sum()
    at_edge = discs[17:]  # the same pair cut by the top border
    assert watershed_instances(at_edge, min_distance=5).max() == 2


def test_cleanup_removes_speck_and_fills_hole():
    mask = np.zeros((30, 30), bool)
    mask[5:20, 5:20] = True
    mask[10:13, 10:13] = False  # hole
    mask[25:27, 25:27] = True  # 4-pixel speck
    clean = binary_cleanup(mask, fill_holes=True, min_size=10)
    assert clean[10:13, 10:13].all() and not clean[25:27, 25:27].any()
    assert clean.sum() == 15 * 15
    opened = binary_cleanup(mask, opening=1)
    assert not opened[25:27, 25:27].any()  # a 2x2 speck cannot hold the 3x3 cross of disk(1) ...
    assert opened.sum() == mask[5:20, 5:20].sum() - 4  # ... nor can the square's four corners
    assert binary_cleanup(mask, closing=2)[10:13, 10:13].all()
    edge = np.zeros((10, 10), bool)
    edge[:, :4] = True  # an object on the border survives closing
    assert (binary_cleanup(edge, closing=2) == edge).all()


def test_probability_png_round_trip_and_outputs(tmp_path):
    rng = np.random.default_rng(1)
    prob = smooth(rng.random((64, 48)), sigma=1.0)
    save_probability(tmp_path / "p.png", prob)
    back = np.array(Image.open(tmp_path / "p.png"))
    assert back.dtype == np.uint16 and np.abs(back / 65535 - prob).max() <= 1 / 65535
    save_probability(tmp_path / "p.tif", prob)
    import tifffile
    assert np.array_equal(tifffile.imread(tmp_path / "p.tif"), prob.astype(np.float32))
    labels = np.zeros((20, 20), np.int64)
    labels[2:5, 2:5], labels[10:15, 10:15] = 3, 300
    save_labels(tmp_path / "l.png", labels)
    assert np.array_equal(np.array(Image.open(tmp_path / "l.png")), labels)
    picture = overlay(rng.random((20, 20)), labels, tmp_path / "o.png")
    assert picture.shape == (20, 20, 3) and np.array(Image.open(tmp_path / "o.png")).shape == (20, 20, 3)
    assert (picture[2, 2] == (255, 255, 0)).all()  # instance boundary drawn
    with pytest.raises(UserError):
        save_probability(tmp_path / "p.jpg", prob)
    with pytest.raises(UserError):
        save_probability(tmp_path / "bad.png", prob * 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.png", "o.png", "p.png", "p.tif"]


def test_choose_threshold_synthetic():
    yy, xx = np.mgrid[:32, :32]
    truth = (yy - 16) ** 2 + (xx - 16) ** 2 <= 64
    prob = np.where(truth, 0.9, 0.2)
    prob[truth & ~ndimage.binary_erosion(truth)] = 0.65  # rim: lost for t >= 0.65
    prob[:3, :3] = 0.6  # background speck: kept for t < 0.6
    r = choose_threshold([prob, prob], [truth, truth], metric="f1")
    assert r["threshold"] == pytest.approx(0.6) and r["score"] == 1.0
    # Rand: truth membrane down column 8 splits two cells; its prob 0.45 is weak, and a blob of 0.35
    # inside the left cell would become boundary for t <= 0.35. Only t = 0.4 of the ISBI grid is perfect.
    membrane = np.zeros((12, 16), bool)
    membrane[:, 8] = True
    mprob = np.where(membrane, 0.45, 0.1)
    mprob[4:7, 2:5] = 0.35
    r = choose_threshold([mprob], [membrane], metric="rand")
    assert r["threshold"] == pytest.approx(0.4) and r["score"] == pytest.approx(1.0)
    assert r["scores"][0.3] < 1.0 and r["scores"][0.5] < 1.0
    with pytest.raises(UserError):
        choose_threshold([mprob], [membrane], metric="auc")


def test_split_metrics_scores_at_a_chosen_threshold():
    """A map that is 0.7 on the nuclei and 0.6 around them: wrong at 0.5, exact at 0.65, objects included."""
    from medconv.data.segmentation import SegImage
    from medconv.segment.evaluate import split_metrics

    instances = np.zeros((40, 40), np.int32)
    instances[5:15, 5:15], instances[25:35, 20:30] = 1, 2
    mask = (instances > 0).astype(np.int64)
    fg = np.where(mask == 1, 0.7, 0.0)
    fg[20:40, 15:35] = np.maximum(fg[20:40, 15:35], 0.6 * (mask[20:40, 15:35] == 0))
    probs = [np.stack([1 - fg, fg])]
    im = SegImage("t", np.zeros((1, 40, 40), np.float32), mask, instances=instances)
    at_half = split_metrics([im], probs, ["background", "nucleus"])
    at_chosen = split_metrics([im], probs, ["background", "nucleus"], threshold=0.65)
    assert at_half["f1"] < 0.8 and at_half["pixel_error"] > 0.1 and at_half["aji"] < 0.8
    assert at_chosen["f1"] == 1.0 and at_chosen["pixel_error"] == 0.0 and at_chosen["aji"] == pytest.approx(1.0)


# ---------------------------------------------------------------- membrane thinning


def test_thin_membranes_keeps_which_cells_are_apart_and_leaves_one_pixel_lines():
    prob = np.zeros((40, 40), np.float32)
    prob[:, 18:23] = 0.9          # a 5 px membrane splits the image into two cells ...
    prob[10:14, 3:5] = 0.95       # ... the left one holding a 4x2 speck of membrane
    prob[30:33, 30:33] = 0.2      # a dim blob inside the right cell (below the seed threshold: no effect)
    thin = thin_membranes(prob, seed_threshold=0.5)
    cells = ndimage.label(thin < 0.5, structure=CROSS)[0]
    assert cells.max() == 2 and set(np.unique(thin)) == {0.0, 1.0}
    per_row = thin.sum(axis=1)  # one pixel between the cells (two where the line steps sideways) ...
    assert per_row.min() == 1 and per_row.max() <= 2 and per_row.sum() <= 48
    assert thin[:, :18].sum() == 0 and thin[:, 23:].sum() == 0  # ... inside the band; the speck handed to its cell
    leaky = prob.copy()
    leaky[20:22, 18:23] = 0.3     # a gap in the membrane: the cells are one at threshold 0.5 ...
    assert ndimage.label(thin_membranes(leaky, 0.5) < 0.5, structure=CROSS)[0].max() == 1
    assert ndimage.label(thin_membranes(leaky, 0.25) < 0.5, structure=CROSS)[0].max() == 2  # ... two below 0.3
    split = prob.copy()
    split[5:8, 5:8] = 0.0
    split[4:9, 4:9] = np.where(np.pad(np.zeros((3, 3)), 1, constant_values=1) > 0, 0.9, 0.0)  # a ringed 3x3 seed
    assert ndimage.label(thin_membranes(split, 0.5) < 0.5, structure=CROSS)[0].max() == 3
    assert ndimage.label(thin_membranes(split, 0.5, min_seed=10) < 0.5, structure=CROSS)[0].max() == 2  # seed dropped


def test_thinning_lowers_the_rand_error_of_thick_membranes_on_isbi(data_root):
    membrane = isbi_membrane(data_root, "20")
    thick = ndimage.binary_dilation(membrane, iterations=2).astype(np.float32)  # right cells, membranes 4 px too wide
    raw = rand_error(thick, membrane)["rand_error"]
    thinned = rand_error(thin_membranes(thick, 0.5), membrane, thresholds=[0.5])
    assert raw > 0.05 and thinned["rand_error"] < raw / 5  # the wide bands' pixels were singleton segments
    assert rand_error(thin_membranes(membrane.astype(np.float32), 0.5), membrane, thresholds=[0.5])["rand_error"] == 0
