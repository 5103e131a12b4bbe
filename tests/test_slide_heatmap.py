"""Class heat maps of whole slides (medconv predict --slide-level): the CRCHistoPhenotypes nucleus classifier
(conftest's crc_classifier) over test_slides' pyramidal TIFF (a pink tissue disc on glass), tile by tile with seams,
equals classifying the windows cut from the whole level image; glass is 0 and invalid; the CLI writes the files and
refuses what it cannot map in one line."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from test_slides import slide_file  # noqa: F401  (the fixture: disc.tif, 3 levels)

from medconv.classify.predict import predict_scores
from medconv.classify.slide_heatmap import slide_heatmap, window_classifier
from medconv.data.nuclei import extract_patches
from medconv.data.slides import open_slide
from medconv.training.checkpoint import load_model


@pytest.fixture(scope="module")
def classifier(crc_classifier):
    model, meta = load_model(crc_classifier[0], "best", "cpu")
    return model, meta


def whole_level_heatmap(slide, level: int, model, meta: dict, stride: int) -> np.ndarray:
    """(K, rows, cols): the windows centred at (i * stride + stride // 2, j * stride + stride // 2) cut from the
    whole level image (mirrored at its edges, as training's patches), classified in one go."""
    width, height = slide.sizes[level]
    image = slide.read(level, 0, 0, width, height).astype(np.float32) / 255.0
    ys = np.arange(stride // 2, height, stride)
    xs = np.arange(stride // 2, width, stride)
    rows, cols = np.meshgrid(ys, xs, indexing="ij")
    windows = extract_patches(image, rows.ravel(), cols.ravel(), meta["input_size"][0])  # (N, P, P, 3)
    scores = predict_scores(model, torch.from_numpy(windows).permute(0, 3, 1, 2), meta["mean"], meta["std"],
                            meta["task"])
    return scores.T.reshape(-1, len(ys), len(xs))


@pytest.mark.parametrize("stride", [9, 27])
def test_the_tiled_heat_map_is_the_whole_level_one(slide_file, classifier, stride):  # noqa: F811
    """Level 2 (512 x 384) in tiles of about 64 px (many seams, halo 13 px, windows mirrored at the slide's edges),
    every cell computed (a mask that is all tissue): the map is the whole-level one, cell for cell."""
    model, meta = classifier
    slide = open_slide(slide_file[0])
    classify, classes = window_classifier(model, meta, "cpu", "none")
    every = (np.ones((1, 1), bool), 2)
    heat, valid, stats = slide_heatmap(slide, 2, classify, len(classes), (27, 27), stride, 64, mask=every)
    whole = whole_level_heatmap(slide, 2, model, meta, stride)
    assert heat.shape == whole.shape == (4, -(-(384 - stride // 2) // stride), -(-(512 - stride // 2) // stride))
    assert valid.all() and stats["tissue_tiles"] == stats["tiles"] > 4 and stats["windows"] == valid.size
    assert stats["tile"] % stride == 0 and stats["tile"] < 384
    assert np.abs(heat - whole).max() <= 1e-5
    assert whole.std(axis=(1, 2)).max() > 1e-3  # the map is not flat: the comparison means something


def test_glass_cells_are_zero_and_invalid_tissue_cells_sum_to_one(slide_file, classifier):  # noqa: F811
    """With the slide's own tissue mask, the cells centred on the disc (radius 125 px at level 2, centre (325, 175))
    are classified, the glass around it is not: probability 0, invalid; only tiles holding tissue are read."""
    model, meta = classifier
    slide = open_slide(slide_file[0])
    classify, classes = window_classifier(model, meta, "cpu", "none")
    heat, valid, stats = slide_heatmap(slide, 2, classify, len(classes), (27, 27), 9, 96)
    ys, xs = np.arange(valid.shape[0]) * 9 + 4, np.arange(valid.shape[1]) * 9 + 4
    distance = np.hypot(ys[:, None] - 175, xs[None, :] - 325)
    assert valid[distance < 115].all() and not valid[distance > 135].any()
    assert not heat[:, ~valid].any()
    tissue = heat[:, valid]
    assert (tissue >= 0).all() and (tissue <= 1).all()
    np.testing.assert_allclose(tissue.sum(0), 1, atol=1e-5)
    assert stats["windows"] == valid.sum() and stats["tissue_tiles"] < stats["tiles"]


def test_predict_slide_level_writes_the_heat_map_and_refuses_in_one_line(slide_file, crc_classifier, cli,  # noqa: F811
                                                                        tmp_path):
    from test_bad_input import save_run

    from medconv.segment.config import SegmentConfig

    run, path = crc_classifier[0], slide_file[0]
    done = cli("predict", run, path, "--slide-level", "2", "--stride", "9", "--slide-tile", "128", "--class",
               "epithelial", "--out", tmp_path / "maps")
    assert done.returncode == 0, done.stderr
    assert "tiles hold tissue" in done.stdout and "tiles/s" in done.stdout
    written = tifffile.imread(tmp_path / "maps" / "disc_heatmap.tif")
    assert written.dtype == np.float32 and written.shape == (5, 43, 57)  # 4 classes, then the tissue channel
    valid = written[4] == 1
    assert 0 < valid.mean() < 1 and not written[:4, ~valid].any()
    np.testing.assert_allclose(written[:4, valid].sum(0), 1, atol=1e-5)
    assert (tmp_path / "maps" / "disc_heatmap.png").read_bytes()[:4] == b"\x89PNG"

    def refused(*args, match: str) -> None:
        done = cli("predict", *args)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert match in done.stderr, done.stderr

    refused(run, path, "--slide-level", "3", "--out", tmp_path / "x", match="--slide-level 3: ")
    refused(run, path, "--slide-level", "2", "--slide-tile", "16", "--out", tmp_path / "x", match="smaller than")
    refused(run, path, "--slide-level", "2", "--stride", "0", "--out", tmp_path / "x", match="--stride")
    patch = {"widths": [4], "kernels": [3], "hidden": [8]}
    cfg = SegmentConfig(dataset="isbi2012", patch=15, model_options=patch, epochs=1).validate()
    save_run(tmp_path / "seg", "patch-cnn", patch, 3, 15, ["background", "tissue"],
             {"task": "segmentation", "mode": "patch", "patch": 15, "tile": 128, "config": cfg.to_dict()})
    refused(tmp_path / "seg", path, "--slide-level", "2", "--allow-unfinished", "--out", tmp_path / "x",
            match="2D classifier")
    assert not (tmp_path / "x").exists()
