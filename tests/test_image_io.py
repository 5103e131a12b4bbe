"""Users' own files as they are (issue 22): compressed and multi-page TIFF, 16-bit PNG, DICOM in Hounsfield units
with windows, multi-frame DICOM, DICOM series, NIfTI with its spacing; native size by default, the data summary,
and one-line refusals. Every file is made by the test."""
from __future__ import annotations

import copy
import json
import re

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from pydicom import examples
from pydicom.uid import generate_uid

from conftest import run_in_process
from medconv.data.folders import load_image_folder
from medconv.data.reading import Reading
from medconv.data.images import WINDOW_PRESETS, fit, load_image, parse_window, prepare_image, read_image
from medconv.data.volumes import read_volume
from medconv.errors import UserError

TINY = ["--arch", "simple-cnn", "--model-option", "widths=[4]", "--model-option", "hidden=[8]", "--epochs", "1"]


def ct_slice(path, hu: np.ndarray, slope: float = 1.0, intercept: float = -1024.0, z: float = 0.0, series=None):
    """A CT DICOM file (pydicom's example header) whose stored int16 values give `hu` (H, W) through the
    rescale: stored = (hu - intercept) / slope."""
    ds = copy.deepcopy(examples.ct)
    stored = np.round((hu - intercept) / slope).astype(np.int16)
    ds.Rows, ds.Columns = stored.shape
    ds.PixelData = stored.tobytes()
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series or ds.SeriesInstanceUID
    ds.ImagePositionPatient, ds.InstanceNumber = [0.0, 0.0, z], int(z) + 1
    ds.save_as(path)
    return path


def test_lzw_and_deflate_tiff_read_like_the_uncompressed_file(tmp_path):
    a = np.random.default_rng(0).integers(0, 4096, (40, 50)).astype(np.uint16)
    for compression in (None, "lzw", "deflate"):
        tifffile.imwrite(tmp_path / f"{compression}.tif", a, compression=compression)
    plain = read_image(tmp_path / "None.tif")
    for compression in ("lzw", "deflate"):
        np.testing.assert_array_equal(read_image(tmp_path / f"{compression}.tif"), plain)
    np.testing.assert_allclose(plain[..., 0], a / 65535.0, atol=1e-7)  # by the 16 bits, not the image's range


def test_multipage_tiff_is_refused_as_an_image_and_read_as_a_volume(tmp_path):
    pages = np.stack([np.full((8, 9), v, np.uint8) for v in (10, 20, 30)])
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="minisblack")
    with pytest.raises(UserError, match="holds 3 frames") as err:
        read_image(tmp_path / "stack.tif")
    assert "\n" not in str(err.value)
    volume, meta = read_volume(tmp_path / "stack.tif")
    assert volume.shape == (3, 8, 9) and volume[:, 0, 0].tolist() == [10, 20, 30]


def test_16_bit_png_low_order_bits_change_the_network_input(tmp_path):
    base = np.random.default_rng(1).integers(0, 256, (16, 16)).astype(np.uint16) * 256
    Image.fromarray(base).save(tmp_path / "a.png")
    Image.fromarray(base + 37).save(tmp_path / "b.png")  # the same top 8 bits
    a, meta, how = load_image(tmp_path / "a.png")
    b = read_image(tmp_path / "b.png")
    assert meta.bits == 16 and meta.dtype == "uint16" and "16-bit" in how
    assert not np.array_equal(a, b)
    np.testing.assert_allclose(b - a, 37 / 65535.0, atol=1e-7)
    # the training set keeps them apart too: stored as float32, not uint8
    for cls, img in (("x", base), ("y", base + 37)):
        (tmp_path / "set" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(img).save(tmp_path / "set" / cls / f"{i}.png")
    info, sets = load_image_folder(tmp_path / "set", val_fraction=0.2, test_fraction=0.2)
    images = torch.cat([s.images for s in sets.values()])
    assert images.dtype == torch.float32 and len(torch.unique(images.sum((1, 2, 3)))) == 2
    assert any("16-bit" in line for line in info.summary)


def test_dicom_ct_is_read_in_hounsfield_units_and_windowed(tmp_path):
    hu = np.array([[-1000.0, -600.0], [40.0, 1000.0]])
    path = ct_slice(tmp_path / "ct.dcm", np.kron(hu, np.ones((4, 4))), slope=0.5, intercept=-1024.0)
    x, meta, how = load_image(path, parse_window("40,400"))
    assert meta.units == "HU" and meta.modality == "CT" and how == "window 40,400"
    # window 40,400 spans -160..240 HU: air and lung 0, 40 HU the middle, bone 1
    np.testing.assert_allclose(x[::4, ::4, 0], [[0.0, 0.0], [0.5, 1.0]], atol=1e-6)
    assert meta.observed == (-1000.0, 1000.0)  # the rescale (slope 0.5) applied: HU, not stored values
    lung = read_image(path, WINDOW_PRESETS["lung"])  # -1350..150 HU
    np.testing.assert_allclose(lung[::4, ::4, 0], [[350 / 1500, 750 / 1500], [1390 / 1500, 1.0]], atol=1e-6)
    full = read_image(path)  # no window: -1024..3071 HU for every CT image alike
    np.testing.assert_allclose(full[::4, ::4, 0], (hu + 1024) / 4095, atol=1e-6)


def test_window_option_is_checked():
    assert parse_window("lung") == (-600.0, 1500.0) and parse_window(None) is None
    for bad in ("40", "40,0", "40,-5", "a,b", "nan,400", "lungs"):
        with pytest.raises(UserError, match="--window"):
            parse_window(bad)


def test_multiframe_dicom_is_refused_as_an_image_and_read_as_a_volume(tmp_path):
    ds = copy.deepcopy(examples.ct)
    frames = np.stack([np.full((6, 7), v, np.int16) for v in (1024, 1064, 2024)])  # -> 0, 40, 1000 HU
    ds.Rows, ds.Columns, ds.NumberOfFrames = 6, 7, 3
    ds.PixelData = frames.tobytes()
    ds.save_as(tmp_path / "mf.dcm")
    with pytest.raises(UserError, match="holds 3 frames"):
        read_image(tmp_path / "mf.dcm")
    volume, meta = read_volume(tmp_path / "mf.dcm")
    assert volume.shape == (3, 6, 7) and volume[:, 0, 0].tolist() == [0.0, 40.0, 1000.0] and meta.units == "HU"


def test_dicom_series_is_one_volume_and_two_series_are_refused(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    uid = generate_uid()
    for k in range(3):
        ct_slice(folder / f"s{k}.dcm", np.full((5, 6), 100.0 * k), z=2.5 * k, series=uid)
    volume, meta = read_volume(folder)
    assert volume.shape == (3, 5, 6) and volume[:, 0, 0].tolist() == [0.0, 100.0, 200.0]
    assert meta.spacing[0] == pytest.approx(2.5) and meta.units == "HU"
    ct_slice(folder / "other.dcm", np.zeros((5, 6)), series=generate_uid())
    with pytest.raises(UserError, match="holds 2 DICOM series") as err:
        read_volume(folder)
    assert "\n" not in str(err.value)


def test_nifti_volume_with_its_spacing(tmp_path):
    data = np.zeros((10, 12, 5), np.int16)  # (i, j, k)
    data[2, 3, 4] = 700
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.8, 2.0, 1.0])), tmp_path / "v.nii.gz")
    volume, meta = read_volume(tmp_path / "v.nii.gz")
    assert volume.shape == (5, 12, 10) and volume[4, 3, 2] == 700  # (k, j, i)
    assert meta.spacing == pytest.approx((2.0, 0.8, 0.5)) and meta.affine[0, 0] == 0.5
    with pytest.raises(UserError, match="holds 5 frames"):
        read_image(tmp_path / "v.nii.gz")
    nib.save(nib.Nifti1Image(data[..., :1], np.eye(4)), tmp_path / "slice.nii")  # one slice: a 2D image
    assert read_image(tmp_path / "slice.nii").shape == (12, 10, 1)


def test_fit_modes():
    x = torch.arange(2 * 40 * 60, dtype=torch.float32).reshape(1, 2, 40, 60) / 4800
    for mode in ("resize", "pad", "crop"):
        assert fit(x, (32, 32), mode).shape == (1, 2, 32, 32)
    padded = fit(x, (50, 50), "pad")  # no scaling: rows padded with zeros, columns cropped around the centre
    assert torch.equal(padded[..., 5:45, :], x[..., 5:55]) and padded[..., :5, :].abs().sum() == 0
    cropped = fit(x, (20, 20), "crop")  # the shorter side scaled to 20: 20x30, the centre 20 columns kept
    assert torch.allclose(cropped, fit(fit(x, (20, 30), "resize"), (20, 20), "pad"))
    assert prepare_image(np.zeros((9, 9, 3), np.float32), 1, (4, 4)).shape == (1, 4, 4)


def _folder(root, sizes: dict[str, list[tuple[int, int]]]):
    rng = np.random.default_rng(0)
    for cls, shapes in sizes.items():
        (root / cls).mkdir(parents=True)
        for i, shape in enumerate(shapes):
            Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8)).save(root / cls / f"{cls}{i}.png")
    return root


def test_a_folder_of_50px_images_trains_at_50px_and_the_checkpoint_says_so(tmp_path):
    root = _folder(tmp_path / "patches", {"a": [(50, 50)] * 8, "b": [(50, 50)] * 8})
    done = run_in_process("train", "--images", root, *TINY, "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert meta["input_size"] == [50, 50] and meta["file_size"] == [50, 50]
    assert "native size 50x50 -> network input 50x50 (native)" in done.stderr
    assert re.search(r"^data: train \d+: a \d+, b \d+$", done.stderr, re.M), done.stderr


def test_mixed_sizes_need_a_size_and_then_say_what_was_done(tmp_path):
    root = _folder(tmp_path / "mixed", {"a": [(50, 50)] * 6, "b": [(50, 50)] * 5 + [(64, 80)]})
    with pytest.raises(UserError) as err:
        load_image_folder(root)
    assert "50x50 (11 images" in str(err.value) and "64x80 (1 image" in str(err.value)
    assert "--size" in str(err.value) and "--resize-mode" in str(err.value) and "\n" not in str(err.value)
    info, sets = load_image_folder(root, Reading(size=(32, 32), fit_mode="crop"))
    assert info.size == (32, 32) and sets["train"].images.shape[-2:] == (32, 32)
    assert "12 of 12 images brought to it by --resize-mode crop" in "\n".join(info.summary)


def test_mixed_sizes_without_size_are_one_line_and_exit_2(tmp_path):
    root = _folder(tmp_path / "mixed", {"a": [(30, 30)] * 5, "b": [(30, 30)] * 4 + [(40, 30)]})
    done = run_in_process("train", "--images", root, *TINY, "--out", tmp_path / "run")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "differ in size" in done.stderr and "--size" in done.stderr and not (tmp_path / "run").exists()


def test_segmentation_nifti_mask_of_another_shape_is_refused(tmp_path):
    for folder, shape in (("images", (20, 24)), ("masks", (20, 20))):
        (tmp_path / folder).mkdir()
        for i in range(4):
            data = np.zeros((*shape[::-1], 1), np.uint8)  # (i, j, k): columns, rows, one slice
            data[2:6, 3:8] = 1
            nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / folder / f"case{i}.nii.gz")
    done = run_in_process("segment", "train", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                          "--patch", "9", "--epochs", "1", "--out", tmp_path / "run")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "case0.nii.gz is 20x24 but mask" in done.stderr and "is 20x20" in done.stderr


def test_a_corrupt_file_among_good_ones_is_named(tmp_path):
    root = _folder(tmp_path / "set", {"a": [(20, 20)] * 5, "b": [(20, 20)] * 5})
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    done = run_in_process("train", "--images", root, *TINY, "--out", tmp_path / "run")
    assert done.returncode == 2 and "broken.png" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_lazy_loading_trains_exactly_as_in_memory(tmp_path):
    """Files read per batch by a worker process give the same data fingerprint, normalisation, weights and
    metrics as the same files held in memory."""
    from safetensors.torch import load_file

    from medconv.data.fingerprint import split_fingerprint
    from medconv.data.reading import LazyImages

    root = _folder(tmp_path / "set", {"a": [(24, 24)] * 12, "b": [(24, 24)] * 12})
    memory = load_image_folder(root, loading="memory")[1]
    lazy = load_image_folder(root, loading="lazy")[1]
    assert isinstance(lazy["train"].images, LazyImages) and memory["train"].images.dtype == torch.uint8
    for split in memory:
        assert split_fingerprint(memory[split]) == split_fingerprint(lazy[split])
    runs = {}
    for loading in ("memory", "lazy"):
        done = run_in_process("train", "--images", root, *TINY, "--epochs", "3", "--batch-size", "8", "--loading",
                              loading, "--workers", "1", "--augment", "light", "--model-option", "dropout=0.3",
                              "--deterministic", "--out", tmp_path / loading)
        assert done.returncode == 0, done.stderr
        assert f"loading: {loading}" in done.stderr
        runs[loading] = tmp_path / loading
    weights = [load_file(runs[k] / "checkpoints" / "last.safetensors") for k in ("memory", "lazy")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    metrics = [json.loads((runs[k] / "metrics.json").read_text()) for k in ("memory", "lazy")]
    assert metrics[0]["test"] == metrics[1]["test"]


def test_segmentation_reads_ct_through_its_window(tmp_path):
    from medconv.data.segmentation import load_segmentation

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    hu = np.kron(np.array([[-1000.0, 40.0], [240.0, 1000.0]]), np.ones((8, 8)))
    for i in range(5):
        ct_slice(tmp_path / "images" / f"s{i}.dcm", hu)
        Image.fromarray(((hu > 0) * 255).astype(np.uint8)).save(tmp_path / "masks" / f"s{i}.png")
    info, splits = load_segmentation(images=tmp_path / "images", masks=tmp_path / "masks", value_map="0:0,255:1",
                                     window=parse_window("abdomen"), val_fraction=0.2, test_fraction=0.2)
    image = next(im for s in splits.values() for im in s).image  # (1, H, W)
    np.testing.assert_allclose(image[0, ::8, ::8], [[0.0, 0.5], [1.0, 1.0]], atol=1e-6)  # -160..240 HU
    assert any("window 40,400" in line for line in info.summary)


def test_odd_files_keep_their_values(tmp_path):
    """Found in review: the 8-bit DICOM fast path, palette and 12-bit min-is-white TIFFs, 5-sample TIFFs, grey
    palette PNGs read with the same channels in memory and lazily."""
    from medconv.data.reading import read_one

    ds = copy.deepcopy(examples.ct)
    ds.Modality, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = "OT", 8, 8, 7, 0
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.Rows = ds.Columns = 16
    ds.PixelData = np.full((16, 16), 200, np.uint8).tobytes()
    ds.save_as(tmp_path / "eight.dcm")
    x = read_one(tmp_path / "eight.dcm", Reading(), (16, 16))[0]
    assert float(unit(x).max()) == pytest.approx(200 / 255)

    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    tifffile.imwrite(tmp_path / "pal.tif", ramp, photometric="palette",
                     colormap=np.stack([np.arange(256) * 257] * 3).astype(np.uint16))
    np.testing.assert_allclose(read_image(tmp_path / "pal.tif")[..., 0], ramp / 255, atol=1e-6)
    tifffile.imwrite(tmp_path / "mw.tif", np.full((8, 8), 1000, np.uint16), photometric="miniswhite", bitspersample=12)
    assert read_image(tmp_path / "mw.tif")[0, 0, 0] == pytest.approx(3095 / 4095)
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((12, 16, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(UserError, match="5 samples per pixel"):
        read_image(tmp_path / "five.tif")

    for cls in ("a", "b"):
        (tmp_path / "p" / cls).mkdir(parents=True)
        for i in range(6):
            grey = np.random.default_rng(i).integers(0, 256, (16, 16)).astype(np.uint8)
            Image.fromarray(grey).convert("P").save(tmp_path / "p" / cls / f"{i}.png")
    shapes = {k: load_image_folder(tmp_path / "p", loading=k)[1]["train"].images.shape for k in ("memory", "lazy")}
    assert shapes["memory"] == shapes["lazy"] and shapes["memory"][1] == 1


def unit(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255 if x.dtype == torch.uint8 else x


def test_interpolation_names_with_size_mean_resize_as_runs_saved_before_pad_and_crop(tmp_path):
    from medconv.data.datasets import fit_mode

    assert [fit_mode(m, "size") for m in (None, "nearest", "bilinear", "resize", "pad", "crop")] == \
        ["resize", "resize", "resize", "resize", "pad", "crop"]
    assert fit_mode(None, "resize") == "nearest" and fit_mode("bilinear", "resize") == "bilinear"
    root = _folder(tmp_path / "set", {"a": [(40, 40)] * 6, "b": [(40, 40)] * 6})
    done = run_in_process("train", "--images", root, *TINY, "--size", "28", "--resize-mode", "nearest", "--out",
                          tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert "brought to it by --resize-mode resize" in done.stderr


def test_exif_orientation_turns_the_image_and_its_header_size(tmp_path):
    from medconv.data.readers import image_header

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: stored 20 wide x 10 high, shown 10 wide x 20 high
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(tmp_path / "turned.jpg", exif=exif)
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(tmp_path / "plain.jpg")
    assert read_image(tmp_path / "turned.jpg").shape == (20, 10, 3) and image_header(tmp_path / "turned.jpg")[:2] == (20, 10)
    assert read_image(tmp_path / "plain.jpg").shape == (10, 20, 3)


def test_plain_pngs_decoded_by_imagecodecs_read_as_pillow_reads_them(tmp_path):
    from pathlib import Path

    from medconv.data.readers import read_plain_png

    rng = np.random.default_rng(0)
    plain = {"g8": rng.integers(0, 256, (13, 17)).astype(np.uint8), "g16": rng.integers(0, 65536, (13, 17)).astype(np.uint16),
             "rgb8": rng.integers(0, 256, (13, 17, 3)).astype(np.uint8)}
    for name, a in plain.items():
        Image.fromarray(a).save(tmp_path / f"{name}.png")
        stored, meta = read_plain_png(Path(tmp_path / f"{name}.png"))
        np.testing.assert_array_equal(stored[0].reshape(a.shape), a)
        assert meta.bits == a.dtype.itemsize * 8 and meta.channels == (3 if a.ndim == 3 else 1)
    Image.fromarray(plain["rgb8"]).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(np.dstack([plain["rgb8"], plain["g8"]])).save(tmp_path / "rgba.png")
    for other in ("palette.png", "rgba.png"):  # left to Pillow
        assert read_plain_png(Path(tmp_path / other)) is None
    assert read_image(tmp_path / "rgba.png").shape == (13, 17, 3)


def test_a_written_label_map_keeps_the_input_affine_and_header(tmp_path):
    from medconv.data.volumes import write_label_map

    affine = np.array([[0.0, -0.9, 0.0, 10.0], [1.1, 0.0, 0.0, -5.0], [0.0, 0.0, 2.5, 3.0], [0.0, 0.0, 0.0, 1.0]])
    image = nib.Nifti1Image(np.random.default_rng(0).random((7, 6, 5)).astype(np.float32), affine)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, tmp_path / "scan.nii.gz")
    volume, meta = read_volume(tmp_path / "scan.nii.gz")  # (5, 6, 7)
    labels = (volume > 0.5).astype(np.int64) * 2
    write_label_map(tmp_path / "labels.nii.gz", labels, tmp_path / "scan.nii.gz")
    written = nib.load(tmp_path / "labels.nii.gz")
    np.testing.assert_array_equal(written.affine, nib.load(tmp_path / "scan.nii.gz").affine)
    assert written.header.get_xyzt_units() == ("mm", "sec") and written.get_data_dtype() == np.uint8
    again, again_meta = read_volume(tmp_path / "labels.nii.gz")
    np.testing.assert_array_equal(again, labels)
    np.testing.assert_allclose(again_meta.spacing, meta.spacing)
    with pytest.raises(UserError, match="grid"):
        write_label_map(tmp_path / "bad.nii.gz", labels[:, :3], tmp_path / "scan.nii.gz")
