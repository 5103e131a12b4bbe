"""medconv measure (issue 23, item 5): structure volumes in mm³ from a label map's voxel spacing."""
from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest

from conftest import run_in_process
from medconv.measure import label_volumes, measure


def ball(path, radius_mm: float, spacing=(0.6, 0.8, 1.0), label: int = 1, shape=(60, 50, 40)):
    """A NIfTI label map (i, j, k) holding a ball of `radius_mm` around the volume's centre, voxel `spacing` mm."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    i, j, k = np.meshgrid(*axes, indexing="ij")
    labels = ((i ** 2 + j ** 2 + k ** 2) <= radius_mm ** 2).astype(np.uint8) * label
    nib.save(nib.Nifti1Image(labels, np.diag([*spacing, 1.0])), path)
    return path


def test_a_ball_of_known_radius_is_measured_within_2_percent(tmp_path):
    exact = 4 / 3 * np.pi * 12.0 ** 3
    rows = measure([ball(tmp_path / "ball.nii.gz", 12.0)])
    assert [r["label"] for r in rows] == [1]
    assert rows[0]["volume_mm3"] == pytest.approx(exact, rel=0.02)
    assert rows[0]["volume_mm3"] == pytest.approx(rows[0]["voxels"] * 0.6 * 0.8 * 1.0, rel=1e-6)


def test_relative_error_against_references_and_structures_missing_on_one_side(tmp_path):
    labels = np.zeros((4, 4, 4), np.int64)
    labels[0, :2] = 1  # 8 voxels
    labels[3] = 2      # 16 voxels
    assert label_volumes(labels, (0.5, 1.0, 2.0)) == {1: (8, 8.0), 2: (16, 16.0)}
    reference = np.zeros_like(labels)
    reference[0] = 1   # 16 voxels of structure 1, none of structure 2; structure 3 only here
    reference[2, 0] = 3
    for name, array in (("pred", labels), ("ref", reference)):
        nib.save(nib.Nifti1Image(array.astype(np.uint8), np.eye(4)), tmp_path / f"{name}.nii.gz")
    rows = {r["label"]: r for r in measure([tmp_path / "pred.nii.gz"], [tmp_path / "ref.nii.gz"])}
    assert rows[1]["relative_error"] == pytest.approx(-0.5)  # 8 against 16 voxels
    assert rows[2]["reference_mm3"] == 0 and rows[2]["relative_error"] == ""  # no reference volume to compare
    assert rows[3]["volume_mm3"] == 0 and rows[3]["relative_error"] == pytest.approx(-1.0)


def test_cli_writes_a_row_per_map_and_structure(tmp_path):
    ball(tmp_path / "pred.nii.gz", 10.0)
    ball(tmp_path / "ref.nii.gz", 10.5)
    done = run_in_process("measure", tmp_path / "pred.nii.gz", "--reference", tmp_path / "ref.nii.gz",
                          "--names", "1:hippocampus", "--out", tmp_path / "volumes.csv")
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "volumes.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["name"] == "hippocampus"
    expected = (10.0 / 10.5) ** 3 - 1  # about -0.136
    assert float(row["relative_error"]) == pytest.approx(expected, abs=0.02)
    assert float(row["relative_error"]) == pytest.approx(
        (float(row["volume_mm3"]) - float(row["reference_mm3"])) / float(row["reference_mm3"]), abs=1e-6)
