"""The ISBI 2012 leaderboard's scores: V_rand and V_info (foreground-restricted, predicted boundary pixels as
singletons), per slice or pooled, and the thinned variants segment evaluate reports (hand-worked cases, a
scikit-image reference, and real ISBI labels)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.metrics import variation_of_information

from medconv.data.segmentation import SegImage
from medconv.segment.evaluate import (
    challenge_thinned,
    choose_seeds,
    thinned_scores,
    thinning_path,
)
from medconv.segment.metrics import (
    info_f_score,
    info_score,
    isbi_scores,
    rand_error,
    rand_f_score,
)


def entropy(counts) -> float:
    """H in nats of the partition with these segment sizes."""
    p = np.asarray(counts, float) / np.sum(counts)
    return float(-(p * np.log(p)).sum())


def f(a: float, b: float) -> float:
    return 2 * a * b / (a + b)


def isbi_membrane(data_root, k: str) -> np.ndarray:
    return np.array(Image.open(data_root / "isbi2012_em" / "train" / "label" / f"{k}.png")) == 0


# membrane probability maps (1 = membrane) of 3 x 7 and 3 x 8 images, and their truths
SPLIT_TRUTH = np.zeros((3, 7), bool)
SPLIT_TRUTH[:, 3] = True  # cells A (columns 0-2) and B (4-6), 9 pixels each
SPLIT_PROB = SPLIT_TRUTH.astype(float)
SPLIT_PROB[:, 5] = 0.9  # a predicted membrane through B: B1 (column 4), B2 (column 6), 3 boundary pixels in B
MERGE_TRUTH = np.zeros((3, 8), bool)
MERGE_TRUTH[:, [2, 5]] = True  # cells A (0-1), B (3-4), C (6-7), 6 pixels each
MERGE_PROB = np.zeros((3, 8))
MERGE_PROB[:, 5] = 0.9  # the membrane between A and B is missed: A and B merged


def test_equal_prediction_scores_one(data_root):
    truth = isbi_membrane(data_root, "00")
    scores = isbi_scores(truth.astype(float), truth)
    assert scores["v_info"] == pytest.approx(1.0, abs=1e-12) and scores["v_rand"] == pytest.approx(1.0, abs=1e-12)
    assert scores["v_info_split"] == pytest.approx(1.0) and scores["v_info_merge"] == pytest.approx(1.0)
    assert scores["rand_error"] == 0.0 and rand_error(truth.astype(float), truth)["v_rand"] == 1.0
    labels = ndimage.label(~truth)[0]
    assert info_f_score(labels, labels)["v_info"] == pytest.approx(1.0, abs=1e-12)
    # a thick band of predicted membrane: every extra boundary pixel a singleton, so both scores drop, split side only
    thick = ndimage.binary_dilation(truth, iterations=2).astype(float)
    worse = isbi_scores(thick, truth)
    assert worse["v_info"] < 0.95 and worse["v_info_merge"] == pytest.approx(1.0) and worse["v_rand"] < 0.95


def test_split_by_hand():
    # label images: true cells A (8 px) and B (12 px); the prediction halves B (6 + 6 px), no boundary pixels
    truth = np.array([[1, 1, 0, 2, 2, 2], [1, 1, 0, 2, 2, 2], [1, 1, 0, 2, 2, 2], [1, 1, 0, 2, 2, 2]])
    seg = np.array([[1, 1, 0, 2, 2, 2], [1, 1, 0, 2, 2, 2], [1, 1, 0, 3, 3, 3], [1, 1, 0, 3, 3, 3]])
    h_t, h_s = entropy([8, 12]), entropy([8, 6, 6])
    scored = info_f_score(seg, truth)  # S refines T: H(T|S) = 0, I(S;T) = H(T)
    assert scored["v_info_merge"] == pytest.approx(1.0)
    assert scored["v_info_split"] == pytest.approx(h_t / h_s) and scored["v_info_split"] < 0.8
    assert scored["v_info"] == pytest.approx(f(h_t / h_s, 1.0))
    # from a probability map: B1 (3 px), B2 (3 px) and B's 3 predicted-boundary pixels, each a segment of its own
    h_s = entropy([9, 3, 3, 1, 1, 1])
    scores = isbi_scores(SPLIT_PROB, SPLIT_TRUTH, thresholds=[0.5])
    assert scores["v_info_split"] == pytest.approx(np.log(2) / h_s) and scores["v_info_merge"] == pytest.approx(1.0)
    assert scores["v_info"] == pytest.approx(f(np.log(2) / h_s, 1.0))
    pairs = 81 + 9 + 9 + 3  # sum n_ij^2 + one per singleton; sum t_j^2 = 162
    assert scores["v_rand"] == pytest.approx(f(pairs / 162, 1.0)) and scores["rand_error"] == pytest.approx(
        1 - f(pairs / 162, 1.0))


def test_merge_by_hand():
    scores = info_score(MERGE_PROB, MERGE_TRUTH, thresholds=[0.5])
    h_s, h_t = entropy([12, 6]), entropy([6, 6, 6])  # T refines S: I(S;T) = H(S)
    assert scores["v_info_split"] == pytest.approx(1.0) and scores["v_info_merge"] == pytest.approx(h_s / h_t)
    assert scores["v_info"] == pytest.approx(f(1.0, h_s / h_t)) and scores["best_threshold"] == 0.5
    one = info_score(np.zeros((3, 8)), MERGE_TRUTH, thresholds=[0.5])  # all cells merged in one segment: I = 0
    assert one["v_info"] == 0.0 and one["v_info_merge"] == 0.0


def test_stack_per_slice_and_pooled_by_hand():
    probs, truths = [SPLIT_PROB, MERGE_PROB], [SPLIT_TRUTH, MERGE_TRUTH]
    singles = [info_score(p, t, thresholds=[0.5])["v_info"] for p, t in zip(probs, truths)]
    assert info_score(probs, truths, thresholds=[0.5])["v_info"] == pytest.approx(np.mean(singles))
    # pooled: one partition of the 36 pixels, no segment spanning the two slices
    seg, truth, joint = [9, 3, 3, 1, 1, 1, 12, 6], [9, 9, 6, 6, 6], [9, 3, 3, 1, 1, 1, 6, 6, 6]
    mutual = entropy(seg) + entropy(truth) - entropy(joint)
    pooled = info_score(probs, truths, thresholds=[0.5], per_slice=False)
    assert pooled["v_info_split"] == pytest.approx(mutual / entropy(seg))
    assert pooled["v_info_merge"] == pytest.approx(mutual / entropy(truth))
    assert pooled["v_info"] == pytest.approx(f(mutual / entropy(seg), mutual / entropy(truth)))
    assert abs(pooled["v_info"] - np.mean(singles)) > 1e-3  # the two averages differ here
    # Rand: the 2012 figure pools the sums, the leaderboard's V_rand is the slices' mean
    rand_singles = [rand_error(p, t, thresholds=[0.5])["v_rand"] for p, t in zip(probs, truths)]
    pairs, truth_sq, seg_sq = 102 + 108, 162 + 108, 102 + (144 + 36)
    assert rand_error(probs, truths, thresholds=[0.5])["v_rand"] == pytest.approx(f(pairs / truth_sq, pairs / seg_sq))
    both = isbi_scores(probs, truths, thresholds=[0.5])
    assert both["v_rand"] == pytest.approx(np.mean(rand_singles))
    assert both["rand_error"] == pytest.approx(1 - f(pairs / truth_sq, pairs / seg_sq))


def test_matches_scikit_image_and_ignores_label_ids():
    rng = np.random.default_rng(1)
    for _ in range(5):
        seg, truth = rng.integers(0, 5, (12, 13)), rng.integers(0, 4, (12, 13))
        scored = info_f_score(seg, truth)
        # reference: boundary pixels (seg 0) given labels of their own, then skimage's conditional entropies (bits)
        inside = truth != 0
        s = seg[inside].copy()
        s[s == 0] = 100 + np.arange((s == 0).sum())
        t = truth[inside]
        h_s_given_t, h_t_given_s = variation_of_information(t, s)
        h_s, h_t = (entropy(np.unique(x, return_counts=True)[1]) / np.log(2) for x in (s, t))
        mutual = h_t - h_t_given_s
        assert mutual == pytest.approx(h_s - h_s_given_t)
        assert scored["v_info_split"] == pytest.approx(mutual / h_s)
        assert scored["v_info_merge"] == pytest.approx(mutual / h_t)
        # relabelling either image (0 kept as 0) changes nothing
        perm_s, perm_t = np.r_[0, 1000 + rng.permutation(4) * 7], np.r_[0, rng.permutation(3) + 1]
        assert info_f_score(perm_s[seg], perm_t[truth]) == pytest.approx(scored)
        assert rand_f_score(perm_s[seg], perm_t[truth]) == pytest.approx(rand_f_score(seg, truth))


def test_thinning_scores_on_isbi_labels(tmp_path, data_root):
    """Thick blurred maps made from true membranes: both thinnings bring V_rand and V_info back near 1, the seeds and
    the challenge thinning's threshold chosen on 'validation' slices and used unchanged on another slice."""
    def image(k: str) -> tuple[SegImage, np.ndarray]:
        membrane = isbi_membrane(data_root, k)[:192, :192]
        thick = ndimage.gaussian_filter(ndimage.binary_dilation(membrane, iterations=3).astype(np.float32), 1.5)
        return SegImage(k, np.zeros((1, 192, 192), np.float32), membrane.astype(np.int64)), np.stack([1 - thick, thick])

    val, test = [image("20"), image("21")], [image("25")]
    seeds = choose_seeds(tmp_path, "none", [v[0] for v in val], [v[1] for v in val])
    assert json.loads(thinning_path(tmp_path).read_text()) == seeds
    assert set(seeds) == {"seed_threshold", "min_seed", "challenge_threshold"}
    labelled, probs = [t[0] for t in test], [t[1] for t in test]
    raw = isbi_scores([p[1] for p in probs], [im.mask == 1 for im in labelled])
    ours = thinned_scores(tmp_path, "none", labelled, probs)
    board = challenge_thinned(labelled, probs, seeds["challenge_threshold"])
    # measured: raw V_rand 0.947, V_info 0.891 (the bands' pixels are singletons); thinned 0.99 both ways
    assert raw["v_rand"] < 0.96 and raw["v_info"] < 0.92 and raw["v_info_merge"] == pytest.approx(1.0)
    for thinned in (ours, board, board["at_threshold"]):
        assert thinned["v_rand"] > 0.98 and thinned["v_info"] > 0.98 and thinned["rand_error"] < raw["rand_error"] / 3
    assert board["v_rand"] >= board["at_threshold"]["v_rand"]  # the best over thresholds, chosen on these maps
