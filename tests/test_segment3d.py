"""3D segmentation (issue 23, item 4): a 3D U-Net trained on volumes of a manifest learns their structures,
its label maps are written on the input's grid (affine and spacing kept), structure volumes and Dice are exact
on hand-made maps, and a resumed run ends bit-identical to an uninterrupted one."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from conftest import run_in_process
from medconv.data.volume_pairs import load_volume_segmentation
from medconv.errors import UserError
from medconv.segment.config import SegmentConfig
from medconv.segment.volume_maps import dice_per_class, volume_scores
from medconv.segment.volume_train import train_volume_segmentation

SHAPE = (14, 18, 16)  # i, j, k of the files: (D, H, W) = (16, 18, 14)
AFFINE = np.array([[1.5, 0, 0, -20.0], [0, 1.0, 0, 4.0], [0, 0, 2.0, 7.5], [0, 0, 0, 1]])
TINY = dict(arch="unet3d", model_options={"widths": [8, 16]}, epochs=12, samples_per_epoch=64, batch_size=4,
            tile=16, lr=1e-2, seed=0, deterministic=True)


def ball_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A bright ball (label 1) with a dimmer shell on one side (label 2) in noise, on the (i, j, k) grid."""
    grid = np.stack(np.meshgrid(*map(np.arange, SHAPE), indexing="ij"), -1).astype(float)
    centre = rng.uniform(5, np.array(SHAPE) - 5)
    r = np.linalg.norm(grid - centre, axis=-1)
    labels = np.where(r < 3.5, 1, np.where((r < 5) & (grid[..., 0] > centre[0]), 2, 0)).astype(np.uint8)
    image = 100 + 80 * (labels == 1) + 40 * (labels == 2) + rng.normal(0, 8, SHAPE)
    return image.astype(np.float32), labels


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("vol3d")
    rng = np.random.default_rng(0)
    lines = ["image,mask,split,subject"]
    for i in range(10):
        image, labels = ball_case(rng)
        nib.save(nib.Nifti1Image(image, AFFINE), root / f"case{i}.nii.gz")
        nib.save(nib.Nifti1Image(labels, AFFINE), root / f"case{i}_seg.nii.gz")
        split = "train" if i < 6 else "val" if i < 8 else "test"
        lines.append(f"case{i}.nii.gz,case{i}_seg.nii.gz,{split},s{i}")
    (root / "balls.csv").write_text("\n".join(lines) + "\n")
    return root / "balls.csv"


@pytest.fixture(scope="module")
def trained(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("run3d") / "run"
    result = train_volume_segmentation(SegmentConfig(manifest=str(manifest), **TINY).validate(), out)
    return out, result


def test_dice_and_volume_error_are_exact_on_hand_made_maps():
    truth = np.zeros((4, 4, 4), np.int64)
    truth[:2, :2, :2] = 1  # 8 voxels of structure 1, none of structure 2
    pred = np.zeros_like(truth)
    pred[:2, :2, :1] = 1  # 4 of them found
    assert dice_per_class(pred, truth, 3) == [2 * 4 / 12, 1.0]  # a structure absent from both: 1
    scores = volume_scores(pred, truth, ["background", "a", "b"], spacing=(2.0, 1.0, 1.0))
    assert scores["volume_error"] == {"a": -0.5, "b": None}


def test_a_manifest_of_volumes_is_read_as_volumes_with_their_splits(manifest):
    cfg = SegmentConfig(manifest=str(manifest)).validate()
    assert cfg.volumetric() and cfg.arch == "unet3d" and cfg.mode == "dense"
    info, splits = load_volume_segmentation(manifest=str(manifest))
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "val": 2, "test": 2}
    first = splits["train"][0]
    assert first.image.shape == (1, 16, 18, 14) and first.mask.shape == (16, 18, 14)
    assert first.spacing == pytest.approx((2.0, 1.0, 1.5))  # (D, H, W): evaluate's slices drawn at true proportions
    assert 0 <= first.image.min() and first.image.max() <= 1 and set(np.unique(first.mask)) == {0, 1, 2}
    assert any("1.5" in line and "2.0" in line for line in info.summary)  # the spacing, (D, H, W) = (2, 1, 1.5)


def test_a_3d_unet_learns_the_structures_and_writes_label_maps_on_the_input_grid(trained, manifest, tmp_path):
    out, result = trained
    assert result["val"]["dice_mean"] > 0.6 and result["test"]["dice_mean"] > 0.6
    assert result["test"]["n"] == 2 and len(result["test"]["volumes"]) == 2
    image = manifest.parent / "case8.nii.gz"
    done = run_in_process("segment", "predict", out, image, "--out", tmp_path / "maps")
    assert done.returncode == 0, done.stderr
    written = nib.load(str(tmp_path / "maps" / "case8_labels.nii.gz"))
    np.testing.assert_array_equal(written.affine, AFFINE)
    assert written.shape == SHAPE and written.header.get_zooms() == (1.5, 1.0, 2.0)
    truth = np.asarray(nib.load(str(manifest.parent / "case8_seg.nii.gz")).dataobj)
    assert dice_per_class(np.asarray(written.dataobj), truth, 3)[0] > 0.6  # the map lies where the structure is
    assert (tmp_path / "maps" / "case8_slices.png").stat().st_size > 1000
    rows = done.stdout.splitlines()
    assert rows[-2].split(",")[2] == "class1" and float(rows[-2].split(",")[4]) > 0  # mm³: voxels x 3.0
    assert float(rows[-2].split(",")[4]) == 3.0 * int(rows[-2].split(",")[3])
    evaluated = run_in_process("segment", "evaluate", out, "--split", "test")
    assert evaluated.returncode == 0 and "2 volumes" in evaluated.stdout
    test = json.loads((out / "metrics_test.json").read_text())
    assert test["dice_mean"] == pytest.approx(result["test"]["dice_mean"])
    page = (out / "report.html").read_text()  # rewritten by the evaluation: a 3D run's page, its slices
    assert "report ->" in evaluated.stderr and "segmentation, 3D" in page and f"<td>{test['dice_mean']:.4g}</td>" in page
    assert page.count("data:image/png;base64,") >= 3 and "<figcaption>test: " in page


def test_a_volume_smaller_than_the_window_is_mapped_as_training_saw_it(trained, manifest):
    """Inference pads a small volume as training's crops pad it (0 at the far end, before normalisation), so a
    volume that fits one window gets the network's own output on that padded crop (MONAI's sliding window alone
    pads the normalised volume on both sides with its mean)."""
    from medconv.data.transforms import normalise
    from medconv.segment.volume_maps import padded_to, volume_probabilities
    from medconv.training.checkpoint import load_model

    out, _ = trained
    model, meta = load_model(out, "best", "cpu")
    window = tuple(meta["input_size"])  # (16, 16, 14): the training crop
    image = load_volume_segmentation(manifest=str(manifest))[1]["val"][0].image[:, 3:13, :16, 2:11]  # (1, 10, 16, 9)
    with torch.no_grad():
        x = normalise(torch.from_numpy(padded_to(image, window))[None].float(), meta["mean"], meta["std"])
        assert x.shape[2:] == window  # one window, padded along D and W
        expected = torch.softmax(model(x).float(), 1)[0, :, :10, :16, :9].numpy()
    np.testing.assert_allclose(volume_probabilities(model, image, meta, "cpu"), expected, atol=1e-5)


def test_volumes_on_two_processes_give_the_maps_and_rows_of_one(trained, manifest, tmp_path):
    """segment predict --nproc 2 on volumes: each rank maps every other volume (infer.shards) and writes its files;
    the maps are those of one process and rank 0 prints every volume's rows in input order."""
    out, _ = trained
    volumes = [str(manifest.parent / f"case{i}.nii.gz") for i in (6, 7, 8, 9)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank (OMP_NUM_THREADS=1): the same sums in the same order
    try:
        one = run_in_process("segment", "predict", out, *volumes, "--out", tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
    two = subprocess.run([sys.executable, "-m", "medconv.cli", "segment", "predict", str(out), *volumes, "--out",
                          str(tmp_path / "two"), "--nproc", "2"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert one.returncode == two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.splitlines()[1:] == one.stdout.splitlines()[1:] and len(one.stdout.splitlines()) > 8
    for i in (6, 7, 8, 9):
        a, b = (nib.load(str(tmp_path / run / f"case{i}_labels.nii.gz")) for run in ("one", "two"))
        np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
        np.testing.assert_array_equal(a.affine, b.affine)
        assert (tmp_path / "two" / f"case{i}_slices.png").exists()


def test_a_resumed_3d_segmentation_run_ends_with_the_same_weights(manifest, tmp_path):
    settings = {**TINY, "schedule": "constant", "epochs": 4}  # a constant rate: 2 epochs, then 2 more, as 4
    train_volume_segmentation(SegmentConfig(manifest=str(manifest), **settings).validate(), tmp_path / "whole",
                              score_test=False)
    part = SegmentConfig(manifest=str(manifest), **{**settings, "epochs": 2}).validate()
    train_volume_segmentation(part, tmp_path / "part", score_test=False)
    train_volume_segmentation(SegmentConfig(), tmp_path / "part", resume=True, overrides={"epochs": 4},
                              score_test=False)
    resumed = load_file(str(tmp_path / "part" / "checkpoints" / "last.safetensors"))
    straight = load_file(str(tmp_path / "whole" / "checkpoints" / "last.safetensors"))
    assert resumed.keys() == straight.keys()
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)


def test_a_run_trained_at_another_spacing_predicts_on_the_file_grid(manifest, tmp_path):
    info, splits = load_volume_segmentation(manifest=str(manifest), spacing=(2.0, 2.0, 2.0))
    first = splits["train"][0]  # (D, H, W) 16 x 18 x 14 at 2 x 1 x 1.5 mm -> 16 x 10 x 11 (MONAI rounds the extent)
    assert first.image.shape == (1, 16, 10, 11) and first.mask.shape == (16, 10, 11)
    assert set(np.unique(first.mask)) <= {0, 1, 2} and any("resampled to 2x2x2" in line for line in info.summary)
    cfg = SegmentConfig(manifest=str(manifest), spacing="2", **{**TINY, "epochs": 2}).validate()
    train_volume_segmentation(cfg, tmp_path / "run", score_test=False)
    done = run_in_process("segment", "predict", tmp_path / "run", manifest.parent / "case9.nii.gz",
                          "--out", tmp_path / "maps")
    assert done.returncode == 0, done.stderr
    written = nib.load(str(tmp_path / "maps" / "case9_labels.nii.gz"))
    assert written.shape == SHAPE
    np.testing.assert_array_equal(written.affine, AFFINE)


def test_a_mask_on_another_grid_is_refused_naming_both(manifest, tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), AFFINE), tmp_path / "small_seg.nii.gz")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"image,mask,split\n{manifest.parent / 'case0.nii.gz'},small_seg.nii.gz,train\n")
    with pytest.raises(UserError, match=r"bad.csv line 2: image .*case0.nii.gz is 16x18x14 but mask .*small_seg"):
        load_volume_segmentation(manifest=str(bad))
