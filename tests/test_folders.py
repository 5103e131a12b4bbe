"""Reading the user's own images: formats, folder layouts, CSV manifests, errors."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from medconv.data.folders import load_image_folder, load_manifest
from medconv.data.reading import Reading
from medconv.data.images import prepare_image, read_image
from medconv.errors import UserError


def _dicom(path: Path, frames: np.ndarray, photometric: str, slope: float = 1.0,
           intercept: float = 0.0) -> None:
    """Write a minimal uint16 grayscale DICOM; frames (F, H, W)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = frames.shape[1:]
    if frames.shape[0] > 1:
        ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = frames.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# ----------------------------------------------------------------------------- formats


def test_png_gray_and_rgba(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    x = read_image(_png(tmp_path / "g.png", gray))
    assert x.shape == (6, 8, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[..., 0], gray / 255.0, atol=1e-6)

    rgba = np.random.default_rng(0).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: alpha must be dropped, not composited
    x = read_image(_png(tmp_path / "c.png", rgba))
    assert x.shape == (5, 7, 3)
    np.testing.assert_allclose(x, rgba[..., :3] / 255.0, atol=1e-6)


def test_jpeg_rgb(tmp_path):
    img = np.zeros((16, 16, 3), np.uint8)
    img[..., 0] = 200
    img[..., 2] = 50
    path = tmp_path / "a.JPG"
    Image.fromarray(img).save(path, quality=95)
    x = read_image(path)
    assert x.shape == (16, 16, 3)
    np.testing.assert_allclose(x.mean(axis=(0, 1)), [200 / 255, 0, 50 / 255], atol=0.02)


def test_tiff_16bit_and_float(tmp_path):
    a = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", a)
    x = read_image(tmp_path / "a.tif")
    assert x.shape == (2, 2, 1)
    np.testing.assert_allclose(x[..., 0], a / 65535.0, rtol=1e-6)

    f = np.array([[-2.0, 0.0], [2.0, 6.0]], dtype=np.float32)  # outside [0, 1]: min-max
    tifffile.imwrite(tmp_path / "f.tiff", f)
    np.testing.assert_allclose(read_image(tmp_path / "f.tiff")[..., 0], [[0, 0.25], [0.5, 1]])

    rgb = np.random.default_rng(1).integers(0, 256, (3, 4, 5), dtype=np.uint8)  # planar (S, H, W)
    tifffile.imwrite(tmp_path / "p.tif", rgb, photometric="rgb", planarconfig="separate")
    np.testing.assert_allclose(read_image(tmp_path / "p.tif"), np.moveaxis(rgb, 0, -1) / 255.0,
                               atol=1e-6)


def test_dicom_monochrome1_by_its_bit_depth_and_multiframe_refused(tmp_path):
    frame = np.array([[0, 100], [300, 400]], dtype=np.uint16)
    _dicom(tmp_path / "m1.dcm", frame[None], "MONOCHROME1", slope=2.0, intercept=-100.0)
    x = read_image(tmp_path / "m1.dcm")
    assert x.shape == (2, 2, 1)
    # rescaled -100, 100, 500, 700 within the 16 bits' rescaled range -100..131,070 -> MONOCHROME1 inverted
    span = 2.0 * 65535
    np.testing.assert_allclose(x[..., 0], 1 - (frame * 2.0) / span, atol=1e-6)

    frames = np.stack([frame, frame[::-1]])
    _dicom(tmp_path / "mf.dcm", frames, "MONOCHROME2")
    with pytest.raises(UserError, match="holds 2 frames"):
        read_image(tmp_path / "mf.dcm")


def test_bad_files_raise_one_line_user_errors(tmp_path):
    bad = tmp_path / "broken_scan.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(UserError) as err:
        read_image(bad)
    assert "broken_scan.png" in str(err.value) and "\n" not in str(err.value)

    with pytest.raises(UserError, match="not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "notes.gif").write_bytes(b"GIF89a")
    with pytest.raises(UserError, match=r"supported: .*\.png.*\.dcm"):
        read_image(tmp_path / "notes.gif")
    (tmp_path / "junk.dcm").write_bytes(b"not a dicom file at all")
    with pytest.raises(UserError, match="junk.dcm"):
        read_image(tmp_path / "junk.dcm")


# ----------------------------------------------------------------------------- prepare_image


def test_prepare_image_channels_and_resize():
    gray = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30, 1)
    t = prepare_image(gray, 3, (20, 30))
    assert t.shape == (3, 20, 30) and t.dtype == torch.float32
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])
    torch.testing.assert_close(t[0], torch.from_numpy(gray[..., 0]))

    red = np.zeros((4, 4, 3), np.float32)
    red[..., 0] = 1.0
    g = prepare_image(red, 1, (4, 4))
    assert g.shape == (1, 4, 4)
    torch.testing.assert_close(g, torch.full((1, 4, 4), 0.299))

    small = prepare_image(gray, 1, (8, 10))
    assert small.shape == (1, 8, 10)
    assert float(small.min()) >= 0 and float(small.max()) <= 1
    assert small[0, 0, -1] > small[0, 0, 0]  # left-to-right ramp survives resizing
    const = prepare_image(np.full((9, 9, 3), 0.4, np.float32), 3, (32, 32))
    torch.testing.assert_close(const, torch.full((3, 32, 32), 0.4))


# ----------------------------------------------------------------------------- folders


def _class_tree(root: Path, counts: dict[str, int], rgb_first: str | None = None) -> None:
    rng = np.random.default_rng(0)
    for c, n in counts.items():
        for i in range(n):
            shape = (10, 12, 3) if (c == rgb_first and i == 0) else (10, 12)
            _png(root / c / f"{i}.png", rng.integers(0, 256, shape, dtype=np.uint8))


def test_class_folder_layout(tmp_path):
    root = tmp_path / "skin"
    _class_tree(root, {"nevus": 10, "benign": 15, "melanoma": 5})
    (root / "benign" / "readme.txt").write_text("ignored")
    info, sets = load_image_folder(root, reading=Reading(size=(8, 8)), seed=1)
    assert info.classes == ["benign", "melanoma", "nevus"]
    assert info.task == "multi-class" and info.channels == 1 and info.name == "skin"
    assert sum(len(s) for s in sets.values()) == 30
    assert len(sets["test"]) == 6 and len(sets["val"]) == 3 and len(sets["train"]) == 21
    for s in sets.values():
        assert s.images.dtype == torch.uint8 and s.images.shape[1:] == (1, 8, 8)
        assert s.labels.shape == (len(s), 1) and s.labels.dtype == torch.int64
        assert [Path(p).parent.name for p in s.paths] == [info.classes[y] for y in s.labels[:, 0]]
    assert len({p for s in sets.values() for p in s.paths}) == 30
    # stratified: every class in train and test
    for split in ("train", "test"):
        assert set(sets[split].labels[:, 0].tolist()) == {0, 1, 2}

    _class_tree(tmp_path / "mixed", {"a": 5, "b": 5}, rgb_first="b")
    info, sets = load_image_folder(tmp_path / "mixed", reading=Reading(size=(10, 12)))
    assert info.channels == 3 and info.task == "binary-class"
    assert sets["train"].images.shape[1:] == (3, 10, 12)


def test_split_folder_layout(tmp_path):
    root = tmp_path / "xray"
    _class_tree(root / "train", {"normal": 6, "pneumonia": 4})
    _class_tree(root / "validation", {"normal": 2, "pneumonia": 1})
    _class_tree(root / "test", {"normal": 3, "pneumonia": 3})
    info, sets = load_image_folder(root, reading=Reading(size=(10, 12), channels=3))
    assert info.classes == ["normal", "pneumonia"] and info.channels == 3
    assert {k: len(v) for k, v in sets.items()} == {"train": 10, "val": 3, "test": 6}
    assert all(Path(p).parts[-3] == "validation" for p in sets["val"].paths)
    # images stored unresized and gray->RGB exactly: uint8 equals the file's pixels
    first = np.asarray(Image.open(sets["test"].paths[0]))
    assert torch.equal(sets["test"].images[0, 2], torch.from_numpy(first.copy()))

    only = tmp_path / "two"
    _class_tree(only / "train", {"a": 10, "b": 10})
    _class_tree(only / "test", {"a": 2, "b": 2})
    info, sets = load_image_folder(only, reading=Reading(size=(8, 8)))
    assert len(sets["test"]) == 4 and len(sets["train"]) + len(sets["val"]) == 20
    assert len(sets["val"]) == 2
    assert all("/train/" in p for p in sets["val"].paths)


def test_folder_errors(tmp_path):
    _class_tree(tmp_path / "d", {"a": 4, "b": 4})
    (tmp_path / "d" / "empty_class").mkdir()
    with pytest.raises(UserError, match="empty_class"):
        load_image_folder(tmp_path / "d")
    (tmp_path / "flat").mkdir()
    _png(tmp_path / "flat" / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match="no class folders"):
        load_image_folder(tmp_path / "flat")
    _class_tree(tmp_path / "tiny", {"a": 1, "b": 1})
    with pytest.raises(UserError, match="too small"):
        load_image_folder(tmp_path / "tiny")


# ----------------------------------------------------------------------------- manifests


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_manifest_groups_never_straddle_splits(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        _png(tmp_path / "img" / f"{i}.png", rng.integers(0, 256, (6, 6), dtype=np.uint8))
        rows.append([f"img/{i}.png", "tumour" if i % 3 else "normal", f"patient{i % 10}"])
    csv_path = _write_csv(tmp_path / "labels.csv", ["path", "label", "group"], rows)
    group_of = {str(tmp_path / r[0]): r[2] for r in rows}
    seen_splits = set()
    for seed in range(5):
        info, sets = load_manifest(csv_path, reading=Reading(size=(6, 6)), seed=seed)
        assert info.classes == ["normal", "tumour"] and info.task == "binary-class"
        groups = {k: {group_of[p] for p in s.paths} for k, s in sets.items()}
        assert all(len(g) > 0 for g in groups.values())
        assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"]
                    or groups["val"] & groups["test"])
        assert sum(len(g) for g in groups.values()) == 10
        assert sum(len(s) for s in sets.values()) == 40
        seen_splits.add(tuple(sorted(groups["test"])))
    assert len(seen_splits) > 1  # the seed matters


def test_manifest_labels_splits_and_errors(tmp_path):
    for i in range(6):
        _png(tmp_path / f"{i}.png", np.full((4, 4), i * 40, np.uint8))
    split = ["train", "train", "validation", "test", "train", "test"]
    csv_path = _write_csv(tmp_path / "m.csv", ["path", "label", "split"],
                          [[f"{i}.png", [10, 2][i % 2], split[i]] for i in range(6)])
    info, sets = load_manifest(csv_path, reading=Reading(size=(4, 4)))
    assert info.classes == ["2", "10"]  # numeric order, not string order
    assert {k: len(v) for k, v in sets.items()} == {"train": 3, "val": 1, "test": 2}
    assert sets["train"].labels[:, 0].tolist() == [1, 0, 1]
    assert sets["val"].images[0, 0, 0, 0].item() == 80

    bad = _write_csv(tmp_path / "bad.csv", ["path", "label"],
                     [[f"{i}.png", i % 2] for i in range(5)] + [["5.png", 7]])
    with pytest.raises(UserError) as err:
        load_manifest(bad, classes=["benign", "malignant"])
    assert "7" in str(err.value) and "line 7" in str(err.value)

    info, _ = load_manifest(_write_csv(tmp_path / "ok.csv", ["path", "label"],
                                       [[f"{i}.png", i % 2] for i in range(6)]),
                            reading=Reading(size=(4, 4)), classes=["benign", "malignant"])
    assert info.classes == ["benign", "malignant"]

    with pytest.raises(UserError, match="missing column"):
        load_manifest(_write_csv(tmp_path / "nolabel.csv", ["path", "diagnosis"], [["0.png", "a"]]))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match="empty"):
        load_manifest(tmp_path / "empty.csv")
    gone = _write_csv(tmp_path / "gone.csv", ["path", "label"], [["0.png", "a"], ["nope.png", "b"]])
    with pytest.raises(UserError, match=r"gone\.csv line 3: image file .*nope\.png not found"):
        load_manifest(gone)


def test_a_subject_in_two_given_splits_is_refused(tmp_path):
    for i in range(4):
        _png(tmp_path / f"s{i}.png", np.full((6, 6), 40 * i, np.uint8))
    rows = ["path,label,split,subject", "s0.png,a,train,p1", "s1.png,b,val,p2", "s2.png,a,test,p1", "s3.png,b,train,p3"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(UserError, match="'p1' has images in both the train and the test split") as err:
        load_manifest(tmp_path / "m.csv")
    assert "m.csv line 4" in str(err.value)
    (tmp_path / "ok.csv").write_text("\n".join(rows[:3] + ["s2.png,a,train,p1", "s3.png,b,test,p3"]) + "\n")
    info, sets = load_manifest(tmp_path / "ok.csv")
    assert [len(sets[k]) for k in ("train", "val", "test")] == [2, 1, 1]
