"""Mask types (--mask-type labels|binary|instances), choices made on validation inside the regions of interest, and
the printed summary lines at the threshold `segment predict` uses. Tiny images made here; seconds each."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import run_in_process
from medconv.data.segmentation import SegImage, load_segmentation
from medconv.errors import UserError
from medconv.segment.config import SegmentConfig
from medconv.segment.evaluate import choose_foreground_threshold, summary_figures, threshold_said
from medconv.segment.postprocess import choose_threshold

TINY = ["--patch", "11", "--epochs", "1", "--samples-per-epoch", "128", "--batch-size", "64", "--threads", "1",
        "--model-option", "widths=[4,4]", "--model-option", "kernels=[3,3]", "--model-option", "hidden=[8]"]


def write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def instance_data(folder, n: int = 6, side: int = 32):
    """(images, masks) folders of n side x side grey images with 20 bright 4 x 4 nuclei each, and their uint16
    instance maps: each nucleus its own object id (ids 1000 + ..., distinct over the whole data set)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        ids = np.zeros((side, side), np.uint16)
        for k in range(20):
            y, x = 6 * (k // 5) + 2 + rng.integers(0, 2), 6 * (k % 5) + 1 + rng.integers(0, 2)
            ids[y:y + 4, x:x + 4] = 1000 + 20 * i + k
        image = np.where(ids > 0, 200, 40) + rng.integers(0, 30, (side, side))
        write(folder / "images" / f"t{i}.png", image.astype(np.uint8))
        write(folder / "masks" / f"t{i}.png", ids)
    return folder / "images", folder / "masks"


@pytest.fixture(scope="module")
def instance_run(tmp_path_factory):
    """(run directory, stderr of segment train, (images, masks) folders): a 1-epoch patch CNN on instance masks
    (--mask-type instances)."""
    folders = instance_data(tmp_path_factory.mktemp("nuclei"))
    run = tmp_path_factory.mktemp("runs") / "nuclei"
    done = run_in_process("segment", "train", "--images", folders[0], "--masks", folders[1], "--mask-type",
                          "instances", *TINY, "--out", run)
    assert done.returncode == 0, done.stderr
    return run, done.stderr, folders


def test_instance_masks_are_refused_without_a_mask_type(tmp_path):
    images, masks = instance_data(tmp_path)
    done = run_in_process("segment", "train", "--images", images, "--masks", masks, *TINY, "--out", tmp_path / "run")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medconv segment train: error: "), done.stderr
    assert "t0.png has 21 distinct values (121 in all masks)" in lines[0]
    assert "--mask-type instances" in lines[0] and "--mask-type binary" in lines[0] and "--value-map" in lines[0]
    assert not (tmp_path / "run").exists()


def test_instance_masks_train_foreground_and_keep_the_object_ids(instance_run):
    from medconv.training.checkpoint import checkpoint_path, read_checkpoint

    run, _, (images, masks) = instance_run
    meta = read_checkpoint(checkpoint_path(run, "best"), tensors=False)[1]
    assert meta["classes"] == ["background", "foreground"] and meta["num_classes"] == 2
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):  # object metrics: only where the data keeps object ids
        assert 0 <= metrics[split]["aji"] <= 1 and 0 <= metrics[split]["object_dice"] <= 1
        assert "aji" in metrics[split]["at_threshold"]
    info, splits = load_segmentation(images=images, masks=masks, mask_type="instances")
    im = splits["train"][0]
    assert len(np.unique(im.instances)) == 21 and im.instances.max() >= 1000
    assert np.array_equal(im.mask, (im.instances > 0).astype(np.int64))
    assert any("object id" in note for note in info.notes)


def test_binary_masks_map_any_non_zero_value_to_foreground(tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.choice(np.array([0, 3, 7, 200], np.uint8), (3, 12, 10))
    for i in range(3):
        write(tmp_path / "images" / f"b{i}.png", rng.integers(0, 255, (12, 10), dtype=np.uint8))
        write(tmp_path / "masks" / f"b{i}.png", raw[i])
    folders = dict(images=tmp_path / "images", masks=tmp_path / "masks")
    info, splits = load_segmentation(**folders, mask_type="binary")
    assert info.classes == ["background", "foreground"]
    for im in (im for part in splits.values() for im in part):
        np.testing.assert_array_equal(im.mask, (raw[int(im.name[1])] != 0).astype(np.int64))
        assert im.instances is None
    with pytest.raises(UserError, match="not class indices.*--mask-type binary"):  # unset: 0, 3, 7, 200 are no classes
        load_segmentation(**folders)
    with pytest.raises(UserError, match="--value-map maps class labels"):
        load_segmentation(**folders, mask_type="binary", value_map="0:0,3:1,7:1,200:1")
    _, labels = load_segmentation(**folders, value_map="0:0,3:1,7:1,200:1")  # the same as a value map
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(labels["train"], splits["train"]))


@pytest.mark.parametrize("settings, words", [
    (dict(images="i", masks="m", mask_type="binary", value_map="255:1,0:0"), "--value-map maps class labels"),
    (dict(images="i", masks="m", mask_type="instances", classes=["a", "b", "c"]), "two classes"),
    (dict(dataset="isbi2012", mask_type="labels"), "--dataset isbi2012 brings its own"),
    (dict(images="i", masks="m", mask_type="objects"), "expected one of labels, binary, instances"),
])
def test_mask_type_settings_that_do_not_fit_are_one_line(settings, words):
    with pytest.raises(UserError, match=words):
        SegmentConfig(**settings).validate()


# ---------------------------------------------------------------- choices made on validation respect the roi


def roi_case():
    """Two validation maps (40 x 40) whose pixels outside the first one's roi (its right half) would pull the F1
    threshold up: inside, nuclei at 0.6 on background at 0.2 (best t: 0.2); outside, background at 0.5."""
    truth = np.zeros((40, 40), bool)
    truth[5:15, 5:15] = truth[25:35, 25:35] = True
    prob = np.where(truth, 0.6, 0.2)
    prob[:, 20:] = np.where(truth[:, 20:], 0.9, 0.5)
    roi = np.zeros((40, 40), bool)
    roi[:, :20] = True
    other = np.where(truth, 0.7, 0.1)  # a second image without a roi: all of it counts
    return [prob, other], [truth, truth], [roi, None]


def test_a_threshold_chosen_with_a_roi_is_the_one_chosen_on_the_roi_pixels_alone(tmp_path):
    probs, truths, rois = roi_case()
    with_roi = choose_threshold(probs, truths, rois=rois)
    cropped = choose_threshold([probs[0][:, :20], probs[1]], [truths[0][:, :20], truths[1]])
    whole = choose_threshold(probs, truths)
    assert with_roi == cropped and with_roi["threshold"] == pytest.approx(0.2)
    assert whole["threshold"] != with_roi["threshold"]  # the outside pixels would have moved it
    labelled = [SegImage(f"v{i}", np.zeros((1, 40, 40), np.float32), t.astype(np.int64), r)
                for i, (t, r) in enumerate(zip(truths, rois))]
    chosen = choose_foreground_threshold(tmp_path, ["background", "nucleus"], labelled,
                                         [np.stack([1 - p, p]) for p in probs])  # as training chooses it
    assert chosen["threshold"] == with_roi["threshold"]
    assert json.loads((tmp_path / "threshold.json").read_text())["threshold"] == with_roi["threshold"]


def test_rand_thresholds_and_membrane_scores_count_only_the_roi():
    """Membranes: left half (the roi) best at 0.4; right half, weaker cells and membranes, best at 0.8."""
    from medconv.segment.metrics import isbi_scores

    membrane = np.zeros((24, 49), bool)
    membrane[:, [12, 24, 36]] = True  # column 24 separates the halves
    prob = np.where(membrane, 0.55, 0.3)
    prob[:, 25:] = np.where(membrane[:, 25:], 0.9, 0.75)
    prob[:, 24] = 1.0
    roi = np.zeros(membrane.shape, bool)
    roi[:, :24] = True
    with_roi = choose_threshold([prob], [membrane], "rand", rois=[roi])
    cropped = choose_threshold([prob[:, :24]], [membrane[:, :24]], "rand")
    whole = choose_threshold([prob], [membrane], "rand")
    assert with_roi == cropped and with_roi["threshold"] == pytest.approx(0.4)
    assert whole["threshold"] != with_roi["threshold"]
    scored = isbi_scores([prob], [membrane], roi=[roi])
    assert scored["rand_error"] == isbi_scores([prob[:, :24]], [membrane[:, :24]])["rand_error"]


# ---------------------------------------------------------------- summary lines: the figures predict's threshold gives


def test_summary_figures_are_those_at_the_chosen_threshold():
    m = {"per_class": {"background": {}, "nucleus": {}}, "pixel_error": 0.25, "f1": 0.5,
         "at_threshold": {"threshold": 0.35, "pixel_error": 0.125, "f1": 0.75}}
    line = summary_figures(m)
    assert "F1 0.7500" in line and "pixel error 0.1250" in line and "at threshold 0.35" in line
    assert "0.5000" not in line and "0.2500" not in line
    del m["at_threshold"]
    assert "F1 0.5000" in summary_figures(m) and threshold_said(m) == "at threshold 0.5"


def test_printed_summaries_of_train_and_evaluate_say_which_threshold(instance_run, tmp_path):
    run, stderr, _ = instance_run
    metrics = json.loads((run / "metrics.json").read_text())
    last = next(line for line in reversed(stderr.splitlines()) if line.startswith("best epoch"))
    val = metrics["val"]["at_threshold"]
    assert f"val pixel error {val['pixel_error']:.4f}  F1 {val['f1']:.4f}" in last
    assert f"at threshold {metrics['threshold']['threshold']:g} (chosen on validation" in last
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "threshold.json").write_text(json.dumps({"threshold": 0.05, "metric": "f1", "val_score": 0.0}))
    done = run_in_process("segment", "evaluate", copy, "--split", "test")
    assert done.returncode == 0, done.stderr
    m = json.loads((copy / "metrics_test.json").read_text())
    at = m["at_threshold"]
    assert at["threshold"] == 0.05 and at["f1"] != m["f1"]  # the case tells the two apart
    assert f"pixel error {at['pixel_error']:.4f}  F1 {at['f1']:.4f}" in done.stdout
    assert "at threshold 0.05 (chosen on validation, as segment predict uses)" in done.stdout
