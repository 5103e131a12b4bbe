"""Detection from probability maps: point labels, peak finding, one-to-one matching within a tolerance."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from medconv.data.points import (
    PointImage,
    from_pixel,
    load_crchistophenotypes,
    load_points_csv,
    load_points_mat,
    to_pixel,
)
from medconv.detect.matching import (
    detection_scores,
    match,
    per_class_f1,
    threshold_sweep,
)
from medconv.detect.peaks import find_peaks, peaks_to_csv_rows
from medconv.errors import UserError

# ---------------------------------------------------------------- matching


def greedy_nearest_first(pred, truth, tolerance):
    """The naive matcher: take the closest remaining pair while it lies within tolerance."""
    dist = np.hypot(*(pred[:, None, :] - truth[None, :, :]).transpose(2, 0, 1))
    used_p, used_t, n = set(), set(), 0
    for flat in np.argsort(dist, axis=None):
        i, j = np.unravel_index(flat, dist.shape)
        if dist[i, j] <= tolerance and i not in used_p and j not in used_t:
            used_p.add(i), used_t.add(j)
            n += 1
    return n


def test_two_predictions_equidistant_to_one_centre_give_one_match():
    pairs, tp, fp, fn = match(np.array([[0.0, 3.0], [0.0, -3.0]]), np.array([[0.0, 0.0]]), 6)
    assert (tp, fp, fn) == (1, 1, 0)
    assert len(pairs) == 1 and pairs[0][1] == 0


def test_two_detections_near_one_centre_one_is_false_positive():
    truth = np.array([[10.0, 10.0], [50.0, 50.0]])
    pred = np.array([[10.0, 11.0], [11.0, 10.0]])
    assert match(pred, truth, 6)[1:] == (1, 1, 1)


def test_hungarian_finds_more_matches_than_greedy_nearest_first():
    # p0 is closest to t0, but only p0 reaches t1; p1 reaches only t0.
    truth = np.array([[0.0, 0.0], [0.0, 6.5]])
    pred = np.array([[0.0, 1.0], [0.0, -5.5]])
    assert greedy_nearest_first(pred, truth, 6) == 1
    pairs, tp, fp, fn = match(pred, truth, 6)
    assert pairs == [(0, 1), (1, 0)] and (tp, fp, fn) == (2, 0, 0)


def test_plain_distance_cost_would_lose_a_match():
    # p0 sits on t0; t1 and p1 are 5.9 from the origin, 62 degrees apart (6.08 from each other): the
    # least total distance pairs p0-t0, p1-t1 (one match within 6), the most matches pairs p0-t1, p1-t0.
    angle = np.deg2rad(62.0)
    truth = np.array([[0.0, 0.0], [0.0, 5.9]])
    pred = np.array([[0.0, 0.0], [5.9 * np.sin(angle), 5.9 * np.cos(angle)]])
    dist = np.hypot(*(pred[:, None] - truth[None]).transpose(2, 0, 1))
    r, c = linear_sum_assignment(dist)
    assert (dist[r, c] <= 6).sum() == 1 and greedy_nearest_first(pred, truth, 6) == 1
    assert match(pred, truth, 6) == ([(0, 1), (1, 0)], 2, 0, 0)


def test_among_maximum_matchings_the_shortest_is_chosen():
    pairs, *_ = match(np.array([[0.0, 9.0], [0.0, 1.0]]), np.array([[0.0, 0.0], [0.0, 10.0]]), 20)
    assert pairs == [(0, 1), (1, 0)]


def test_tolerance_edge_exactly_equal_matches_just_above_does_not():
    truth = np.array([[0.0, 0.0]])
    assert match(np.array([[3.0, 4.0]]), truth, 5.0)[1] == 1
    assert match(np.array([[3.0, 4.0]]), truth, np.nextafter(5.0, 0.0))[1] == 0
    assert match(np.array([[0.0, 6.0]]), truth, 6)[1] == 1
    assert match(np.array([[0.0, 6.0 + 1e-9]]), truth, 6)[1] == 0


def test_empty_cases_and_zero_division_convention():
    truth, pred, none = np.array([[1.0, 1.0], [9.0, 9.0], [20.0, 3.0]]), np.array([[4.0, 4.0], [30.0, 30.0]]), np.zeros((0, 2))
    assert match(none, truth, 6) == ([], 0, 0, 3)
    assert match(pred, none, 6) == ([], 0, 2, 0)
    assert match(none, none, 6) == ([], 0, 0, 0)
    assert match([], [], 6) == ([], 0, 0, 0)
    no_pred = detection_scores([(none, truth)], 6)
    assert no_pred["precision"] == 0.0 and no_pred["recall"] == 0.0 and no_pred["f1"] == 0.0
    no_truth = detection_scores([(pred, none)], 6)
    assert (no_truth["fp"], no_truth["precision"], no_truth["recall"], no_truth["f1"]) == (2, 0.0, 0.0, 0.0)
    both = detection_scores([(none, none)], 6)
    assert (both["tp"], both["fp"], both["fn"], both["f1"]) == (0, 0, 0, 0.0)


def test_match_count_is_the_maximum_matching_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(200):
        pred, truth = rng.uniform(0, 20, (rng.integers(0, 8), 2)), rng.uniform(0, 20, (rng.integers(0, 8), 2))
        pairs, tp, fp, fn = match(pred, truth, 5)
        graph = np.hypot(*(pred[:, None] - truth[None]).transpose(2, 0, 1)) <= 5 if len(pred) and len(truth) else None
        best = 0 if graph is None else int((maximum_bipartite_matching(csr_matrix(graph)) >= 0).sum())
        assert tp == best and fp == len(pred) - tp and fn == len(truth) - tp
        assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == tp
        assert all(np.hypot(*(pred[i] - truth[j])) <= 5 for i, j in pairs)
        assert tp >= greedy_nearest_first(pred, truth, 5)


def test_detection_scores_sum_over_images():
    a = (np.array([[0.0, 0.0], [50.0, 50.0]]), np.array([[1.0, 1.0]]))  # tp 1, fp 1
    b = (np.array([[5.0, 5.0]]), np.array([[5.0, 7.0], [40.0, 40.0], [80.0, 80.0]]))  # tp 1, fn 2
    s = detection_scores([a, b], 6)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 2)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_threshold_sweep_picks_the_best_f1():
    truth = np.array([[10.0, 10.0], [40.0, 40.0]])
    pred = np.array([[10.0, 11.0, 0.9], [40.0, 41.0, 0.6], [70.0, 70.0, 0.3]])
    rows, best = threshold_sweep([(pred, truth)], 6, [0.2, 0.5, 0.8, 0.95])
    assert [(r["tp"], r["fp"], r["fn"]) for r in rows] == [(2, 1, 0), (2, 0, 0), (1, 0, 1), (0, 0, 2)]
    assert best == 0.5 and rows[1]["f1"] == 1.0 and rows[3]["precision"] == 0.0


def test_per_class_f1_needs_the_same_class():
    truth, pred = np.array([[0.0, 0.0], [20.0, 20.0]]), np.array([[0.0, 1.0], [20.0, 21.0]])
    result = per_class_f1([(pred, ["a", "b"], truth, ["a", "a"])], 6)
    assert result["per_class"]["a"]["tp"] == 1 and result["per_class"]["a"]["fn"] == 1
    assert result["per_class"]["b"]["fp"] == 1 and result["per_class"]["b"]["f1"] == 0.0
    assert result["per_class"]["a"]["f1"] == pytest.approx(2 / 3)
    assert result["weighted_f1"] == pytest.approx(2 / 3) and result["macro_f1"] == pytest.approx(1 / 3)
    with pytest.raises(UserError):
        per_class_f1([(pred, ["a"], truth, ["a", "a"])], 6)


# ---------------------------------------------------------------- peaks


def blobs(shape, centres, heights, sigma):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape)
    for (r, c), h in zip(centres, heights):
        out += h * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * sigma**2))
    return out


CENTRES = [(20.3, 30.6), (60.0, 70.4), (95.7, 20.2)]
HEIGHTS = [0.7, 1.0, 0.6]


def test_find_peaks_locates_blobs_sorted_by_score():
    peaks = find_peaks(blobs((128, 128), CENTRES, HEIGHTS, 3.0), sigma=1.0, min_distance=3, threshold=0.4)
    assert peaks.shape == (3, 3)
    assert np.all(np.diff(peaks[:, 2]) < 0)
    for (r, c), peak in zip([CENTRES[1], CENTRES[0], CENTRES[2]], peaks):
        assert np.hypot(peak[0] - r, peak[1] - c) <= 1.0
    # a Gaussian of sigma 3 smoothed with sigma 1 keeps 9 / 10 of its height
    np.testing.assert_allclose(peaks[:, 2], [0.9 * HEIGHTS[1], 0.9 * HEIGHTS[0], 0.9 * HEIGHTS[2]], atol=0.02)


def test_threshold_drops_the_weakest_blob():
    peaks = find_peaks(blobs((128, 128), CENTRES, HEIGHTS, 3.0), sigma=1.0, threshold=0.58)
    assert len(peaks) == 2 and np.hypot(*(peaks[1, :2] - CENTRES[0])) <= 1.0


def test_min_distance_merges_two_close_blobs():
    prob = blobs((64, 64), [(30.0, 27.0), (30.0, 33.0)], [1.0, 0.9], 1.5)
    assert len(find_peaks(prob, min_distance=2)) == 2
    merged = find_peaks(prob, min_distance=8)
    assert len(merged) == 1 and tuple(merged[0, :2]) == (30.0, 27.0)
    assert len(find_peaks(prob, min_distance=2, nms_radius=6.5)) == 1
    assert len(find_peaks(prob, min_distance=2, nms_radius=5.5)) == 2


def test_plateau_gives_one_peak_and_borders_count():
    prob = np.zeros((40, 40))
    prob[10:15, 20:27] = 0.9
    prob[0, 0] = 0.8
    peaks = find_peaks(prob, min_distance=1, threshold=0.5)
    assert peaks.tolist() == [[12.0, 23.0, 0.9], [0.0, 0.0, 0.8]]
    assert len(find_peaks(np.zeros((10, 10)))) == 0
    with pytest.raises(UserError):
        find_peaks(np.zeros((2, 3, 4)))


def test_peaks_to_csv_rows_round_trip_through_load_points_csv(tmp_path):
    Image.new("RGB", (128, 128)).save(tmp_path / "map1.png")
    peaks = find_peaks(blobs((128, 128), CENTRES, HEIGHTS, 3.0), sigma=1.0, threshold=0.4)
    rows = peaks_to_csv_rows("map1", peaks)
    assert rows[0] == {"image": "map1", "x": peaks[0, 1] + 1, "y": peaks[0, 0] + 1, "score": peaks[0, 2]}
    with (tmp_path / "pred.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "x", "y", "score"])
        writer.writeheader()
        writer.writerows(rows)
    (loaded,) = load_points_csv(tmp_path / "pred.csv", tmp_path)
    np.testing.assert_allclose(loaded.pixels(), peaks[:, :2])
    np.testing.assert_allclose(to_pixel(from_pixel(peaks[:, :2])), peaks[:, :2])
    np.testing.assert_array_equal(to_pixel([[1.0, 1.0], [3.0, 7.0]]), [[0.0, 0.0], [6.0, 2.0]])


# ---------------------------------------------------------------- CRCHistoPhenotypes


@pytest.fixture(scope="module")
def crc(data_root):
    return {source: load_crchistophenotypes(data_root, source=source) for source in ("csv", "mat")}


def test_crc_split_holds_out_selection_images_apart_from_the_test_images(crc, data_root):
    with (data_root / "crchistophenotypes" / "split.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    validation = {r["image"] for r in rows if r["split"] == "validation"}
    training = {r["image"] for r in rows if r["split"] == "train"}
    for splits in crc.values():
        names = {split: {im.name for im in images} for split, images in splits.items()}
        assert {len(v) for v in names.values()} == {10, 60} and len(names["train"]) == 60
        assert names["test"] == validation  # split.csv's validation images are the test set
        every_7th = sorted(training, key=lambda n: int(n[3:]))[6::7]  # of the training images in number order
        assert names["val"] == set(every_7th) and len(every_7th) == 10
        assert not names["val"] & names["test"] and not names["train"] & (names["val"] | names["test"])
        assert all(im.path.is_file() and im.points.shape[1] == 2 for images in splits.values() for im in images)


def test_crc_mat_and_csv_give_the_same_points(crc, data_root):
    with (data_root / "crchistophenotypes" / "detection_centroids.csv").open() as fh:
        n_rows = sum(1 for _ in csv.DictReader(fh))
    for splits in crc.values():
        assert sum(len(im.points) for s in splits.values() for im in s) == n_rows
    for split in ("train", "val", "test"):
        for a, b in zip(crc["csv"][split], crc["mat"][split]):
            assert a.name == b.name and a.points.shape == b.points.shape
            np.testing.assert_allclose(a.points, b.points, atol=1e-4)  # the CSV keeps 4 decimals
    img1 = next(im for im in crc["mat"]["train"] if im.name == "img1")
    np.testing.assert_allclose(img1.points[0], [148.7827, 181.4775], atol=1e-4)
    np.testing.assert_allclose(img1.pixels()[0], [180.4775, 147.7827], atol=1e-4)


def test_crc_classes_from_mat_and_csv_agree(data_root):
    by_source = {s: load_crchistophenotypes(data_root, source=s, classes=True, mpp=0.5) for s in ("csv", "mat")}
    for split in ("train", "val", "test"):
        for a, b in zip(by_source["csv"][split], by_source["mat"][split]):
            assert a.classes == b.classes and a.mpp == b.mpp == 0.5
            np.testing.assert_allclose(a.points, b.points, atol=1e-4)
    classes = [c for s in by_source["mat"].values() for im in s for c in im.classes]
    assert len(classes) == 17801 and set(classes) == {"epithelial", "fibroblast", "inflammatory", "others"}


def test_crc_peaks_of_a_map_drawn_from_the_truth_score_high(crc):
    scored = []
    for im in crc["mat"]["val"][:3]:
        truth = im.pixels()
        prob = np.zeros((500, 500))
        idx = np.clip(np.rint(truth).astype(int), 0, 499)
        prob[idx[:, 0], idx[:, 1]] = 1.0
        scored.append((find_peaks(prob, sigma=1.0, min_distance=2, threshold=0.05), truth))
    s = detection_scores(scored, 6)
    assert s["recall"] > 0.95 and s["precision"] > 0.95


# ---------------------------------------------------------------- bad input


def one_line_error(call, *words):
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


def write_csv(path, rows, header=("image", "x", "y")):
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])


def test_centroid_outside_the_image_is_a_user_error(tmp_path):
    Image.new("RGB", (10, 8)).save(tmp_path / "a.png")
    write_csv(tmp_path / "ok.csv", [("a", 0.2, 0.5), ("a.png", 11.0, 8.5)])
    assert load_points_csv(tmp_path / "ok.csv", tmp_path)[0].points.shape == (2, 2)
    write_csv(tmp_path / "bad.csv", [("a", 5, 5), ("a", 5, 9.2)])
    one_line_error(lambda: load_points_csv(tmp_path / "bad.csv", tmp_path), "bad.csv", "a.png", "outside")
    write_csv(tmp_path / "zero.csv", [("a", -0.4, 3)])  # on the image 0-based, outside it 1-based
    one_line_error(lambda: load_points_csv(tmp_path / "zero.csv", tmp_path, one_based=True), "zero.csv")
    pts = load_points_csv(tmp_path / "zero.csv", tmp_path, one_based=False)[0].points
    np.testing.assert_allclose(pts, [[0.6, 4.0]])


def test_mat_without_the_variable_is_a_user_error(tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "img1.png")
    (tmp_path / "mat" / "img1").mkdir(parents=True)
    path = tmp_path / "mat" / "img1" / "img1_detection.mat"
    savemat(path, {"detection": np.array([[2.0, 3.0]])})
    (image,) = load_points_mat(tmp_path / "mat", tmp_path)
    assert isinstance(image, PointImage) and image.points.tolist() == [[2.0, 3.0]]
    savemat(path, {"points": np.array([[2.0, 3.0]])})
    one_line_error(lambda: load_points_mat(tmp_path / "mat", tmp_path), "img1_detection.mat", "detection")
    path.write_text("not a mat file")
    one_line_error(lambda: load_points_mat(tmp_path / "mat", tmp_path), "img1_detection.mat")


def test_csv_row_for_a_missing_image_is_a_user_error(tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")
    write_csv(tmp_path / "p.csv", [("a", 2, 2), ("ghost", 3, 3)])
    one_line_error(lambda: load_points_csv(tmp_path / "p.csv", tmp_path), "p.csv", "ghost")
    write_csv(tmp_path / "n.csv", [("a", "two", 2)])
    one_line_error(lambda: load_points_csv(tmp_path / "n.csv", tmp_path), "n.csv:2")
