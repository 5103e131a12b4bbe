"""Whole-slide reading (issue 24, item 1): a pyramidal tiled TIFF the test writes is opened lazily with its levels
and microns per pixel, regions read exactly, tissue found from a low level, and tiles cover the tissue only."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from medconv.data.slides import Tile, open_slide, saturation, tissue_mask, tissue_tiles
from medconv.errors import UserError

SIZE = (1536, 2048)  # (height, width) of level 0


@pytest.fixture(scope="module")
def slide_file(tmp_path_factory):
    """White glass with a pink tissue disc of radius 500 px centred at (x, y) = (1300, 700); 3 levels (1, 2, 4),
    0.25 um per level-0 pixel, tiled and deflate-compressed (lossless)."""
    path = tmp_path_factory.mktemp("slides") / "disc.tif"
    rng = np.random.default_rng(0)
    image = np.full((*SIZE, 3), 242, np.uint8) + rng.integers(0, 8, (*SIZE, 3), dtype=np.uint8)
    rows, cols = np.mgrid[:SIZE[0], :SIZE[1]]
    disc = (rows - 700) ** 2 + (cols - 1300) ** 2 < 500 ** 2
    image[disc] = (rng.normal((200, 120, 170), 15, (int(disc.sum()), 3))).clip(0, 255).astype(np.uint8)
    with tifffile.TiffWriter(path, bigtiff=True) as tiff:
        options = dict(tile=(256, 256), photometric="rgb", compression="zlib", resolutionunit="CENTIMETER")
        tiff.write(image, subifds=2, resolution=(1e4 / 0.25, 1e4 / 0.25), **options)
        for k in (2, 4):
            tiff.write(image[::k, ::k], subfiletype=1, resolution=(1e4 / (0.25 * k),) * 2, **options)
    return path, image, disc


def levels_of(path) -> list[np.ndarray]:
    """Every level of a pyramidal TIFF, level 0 first."""
    with tifffile.TiffFile(path) as tiff:
        return [level.asarray() for level in tiff.series[0].levels]


def block_mean(a: np.ndarray) -> np.ndarray:
    """The mean of each 2 x 2 block of `a` (H, W), float64 (ceil(H / 2), ceil(W / 2)); at odd sides the blocks
    hold fewer pixels, and the mean is theirs."""
    sums, counts = np.zeros(((a.shape[0] + 1) // 2, (a.shape[1] + 1) // 2)), np.zeros(((a.shape[0] + 1) // 2,
                                                                                        (a.shape[1] + 1) // 2))
    for dy in (0, 1):
        for dx in (0, 1):
            part = a[dy::2, dx::2].astype(np.float64)
            sums[:part.shape[0], :part.shape[1]] += part
            counts[:part.shape[0], :part.shape[1]] += 1
    return sums / counts


@pytest.fixture
def one_torch_thread():
    """torch on one thread, as in each worker of the suite (conftest): on two cores shared with other work, two
    threads slow these tiny networks 10-100x."""
    from test_distributed_predict import one_thread

    with one_thread():
        yield


def tiny_network(kind: str, method: str = "auto", tta: str = "none"):
    """A MapMaker of an untrained seeded network of `kind`: a small U-Net (dense mode) or a patch classifier of
    17 px (receptive radius 8; exact dense scanning, or with `method` sliding one pass per pixel)."""
    import torch

    from medconv.models.registry import build_model
    from medconv.segment.maps import MapMaker

    torch.manual_seed(1)
    if kind == "unet":
        model, meta = build_model("unet", 3, 2, (64, 64), features=[8, 8, 16, 16, 32, 8]), {"mode": "dense", "tile": 64}
    else:
        model = build_model("patch-cnn", 3, 2, (17, 17), widths=[4], kernels=[4], hidden=[8])
        meta = {"mode": "patch", "patch": 17}
    return MapMaker(model.eval(), {**meta, "mean": [0.5] * 3, "std": [0.25] * 3}, method, tta)


def test_a_pyramidal_tiff_opens_with_its_levels_and_microns_per_pixel(slide_file):
    path, image, _ = slide_file
    slide = open_slide(path)
    assert slide.sizes == [(2048, 1536), (1024, 768), (512, 384)] and slide.downsamples == [1.0, 2.0, 4.0]
    assert slide.mpp == pytest.approx(0.25)
    np.testing.assert_array_equal(slide.read(0, 1000, 300, 120, 80), image[300:380, 1000:1120])
    np.testing.assert_array_equal(slide.read(1, 100, 50, 64, 32), image[::2, ::2][50:82, 100:164])
    with pytest.raises(UserError, match=r"--level 3: .* has levels 0-2 \(0: 2048x1536, 1: 1024x768, 2: 512x384\)"):
        slide.read(3, 0, 0, 10, 10)


def test_the_tissue_mask_finds_the_disc_and_tiles_cover_it_only(slide_file):
    path, _, disc = slide_file
    slide = open_slide(path)
    mask, level = tissue_mask(slide, side=600)
    assert level == 2 and mask.shape == (384, 512)
    truth = disc[::4, ::4]
    assert (mask & truth).sum() / (mask | truth).sum() > 0.95
    tiles = list(tissue_tiles(slide, 0, 256, halo=32, mask=(mask, level)))
    cores = np.zeros(SIZE, bool)
    for t in tiles:
        cores[t.y:t.y + t.height, t.x:t.x + t.width] = True
    assert cores[disc].mean() > 0.99  # every part of the disc is in some tile
    assert len(tiles) < 48 * 0.6  # of the 6 x 8 = 48 tiles of the level, glass-only ones are skipped
    assert Tile(0, 0, 256, 256, 32).region((2048, 1536)) == (0, 0, 288, 288)  # the halo is clipped at the edge


def test_saturation_and_a_file_that_is_not_a_slide(tmp_path):
    assert saturation(np.array([[[255, 255, 255], [255, 0, 0], [0, 0, 0]]], np.uint8)).tolist() == [[0, 1, 0]]
    (tmp_path / "notes.tif").write_text("not a tiff")
    with pytest.raises(UserError, match="cannot read slide .*notes.tif"):
        open_slide(tmp_path / "notes.tif")


@pytest.mark.parametrize("kind", ["unet", "patch"])
def test_slide_maps_tile_by_tile_equal_whole_image_inference(slide_file, tmp_path, kind):
    """Any weights: a U-Net with a halo over its receptive radius and tiles on its pooling grid, and a patch
    classifier's exact dense scanning with half its patch as halo, give the whole-image map at every pixel of
    level 1 (1024 x 768, 12 tiles of 256), written tile by tile as a float32 tiled TIFF; without the halo the
    U-Net's seams show."""
    import torch

    from medconv.infer.slides import slide_maps
    from medconv.models.registry import build_model
    from medconv.segment.maps import MapMaker

    torch.manual_seed(0)
    if kind == "unet":
        model, meta = build_model("unet", 3, 2, (64, 64), features=[8, 8, 16, 16, 32, 8]), {"mode": "dense", "tile": 64}
    else:
        model = build_model("patch-cnn", 3, 2, (33, 33), widths=[4, 8], kernels=[4, 5], hidden=[8])
        meta = {"mode": "patch", "patch": 33}
    maker = MapMaker(model.eval(), {**meta, "mean": [0.5] * 3, "std": [0.25] * 3})
    slide = open_slide(slide_file[0])
    width, height = slide.sizes[1]
    whole = maker(torch.from_numpy(slide.read(1, 0, 0, width, height).transpose(2, 0, 1).copy()) / 255.0)[1].numpy()
    halo = 128 if kind == "unet" else 16
    threshold = float(np.median(whole))
    stats = slide_maps(slide, 1, 256, halo, maker.arrays, 1, 3, tmp_path / "map.tif", min_tissue=0.0, floats=True,
                       mask_out=tmp_path / "mask.tif", threshold=threshold)
    assert stats["tissue_tiles"] == 12 and stats["size"] == [1024, 768] and stats["levels"] == 3
    assert np.abs(tifffile.imread(tmp_path / "map.tif") - whole).max() < 1e-5
    prob, mask = levels_of(tmp_path / "map.tif"), levels_of(tmp_path / "mask.tif")
    assert [p.shape for p in prob] == [m.shape for m in mask] == [(768, 1024), (384, 512), (192, 256)]
    assert prob[0].dtype == np.float32 and mask[0].dtype == np.uint8
    for above, below in zip(prob, prob[1:]):  # 2 x 2 means of the float map
        np.testing.assert_allclose(below, block_mean(above), atol=1e-6)
    np.testing.assert_array_equal(mask[0], np.where(prob[0] > threshold, 255, 0))  # the map's own pixels
    assert 0.3 < (mask[0] == 255).mean() < 0.7
    for above, below in zip(mask, mask[1:]):
        np.testing.assert_array_equal(below, above[::2, ::2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif", "mask.tif"]  # no scratch file left
    if kind == "unet":
        slide_maps(slide, 1, 256, 0, maker.arrays, 1, 3, tmp_path / "seams.tif", min_tissue=0.0, floats=True)
        assert np.abs(tifffile.imread(tmp_path / "seams.tif") - whole).max() > 1e-3


def test_segment_predict_maps_a_slide_level_into_pyramidal_tiffs_with_a_mask(slide_file, tmp_path):
    """NAME_prob.tif (uint16) and NAME_mask.tif (uint8 255 where the map is above the run's threshold.json, as
    for whole images), both tiled pyramids that tifffile and tiffslide open with their levels: level 1 the 2 x 2
    means of level 0 (the map), or its every other pixel (the mask)."""
    import json

    import torch
    from conftest import run_in_process
    from test_bad_input import save_run

    from medconv.segment.config import SegmentConfig
    from medconv.segment.evaluate import load_segmenter
    from medconv.segment.maps import MapMaker

    torch.manual_seed(0)
    patch = {"widths": [4], "kernels": [3], "hidden": [8]}
    cfg = SegmentConfig(dataset="isbi2012", patch=15, model_options=patch, epochs=1).validate()
    save_run(tmp_path / "run", "patch-cnn", patch, 3, 15, ["background", "tissue"],
             {"task": "segmentation", "mode": "patch", "patch": 15, "tile": 128, "config": cfg.to_dict()}, last=True)
    slide = open_slide(slide_file[0])
    level2 = torch.from_numpy(slide.read(2, 0, 0, 512, 384).transpose(2, 0, 1).copy()) / 255.0
    whole = MapMaker(*load_segmenter(tmp_path / "run"))(level2)[1].numpy()
    threshold = float(np.median(whole[slide_file[2][::4, ::4]]))  # half the disc above it
    (tmp_path / "run" / "threshold.json").write_text(json.dumps({"threshold": threshold}))
    done = run_in_process("segment", "predict", tmp_path / "run", slide_file[0], "--slide-level", "2",
                          "--slide-tile", "128", "--allow-unfinished", "--out", tmp_path / "maps")
    assert done.returncode == 0, done.stderr
    assert "tiles hold tissue" in done.stdout and "disc_mask.tif" in done.stdout
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["disc_mask.tif", "disc_prob.tif"]
    written = tifffile.TiffFile(tmp_path / "maps" / "disc_prob.tif")
    page = written.pages[0]
    assert page.is_tiled and page.shape == (384, 512) and page.dtype == np.uint16 and written.is_bigtiff
    assert [level.shape for level in written.series[0].levels] == [(384, 512), (192, 256), (96, 128)]
    assert open_slide(tmp_path / "maps" / "disc_prob.tif").sizes == [(512, 384), (256, 192), (128, 96)]
    prob, mask = levels_of(tmp_path / "maps" / "disc_prob.tif"), levels_of(tmp_path / "maps" / "disc_mask.tif")
    assert not prob[0][:64, :64].any()  # the top-left tile holds no tissue: not computed, written as 0
    for above, below in zip(prob, prob[1:]):  # 2 x 2 means, rounded
        assert np.abs(below.astype(float) - block_mean(above)).max() <= 1
    assert mask[0].dtype == np.uint8 and set(np.unique(mask[0])) == {0, 255}
    sure = np.abs(prob[0] - threshold * 65535) > 0.5  # pixels whose side of the threshold the uint16 map tells
    np.testing.assert_array_equal(mask[0][sure], np.where(prob[0] > threshold * 65535, 255, 0)[sure])
    assert 0.3 < (mask[0][slide_file[2][::4, ::4]] == 255).mean() < 0.7
    for above, below in zip(mask, mask[1:]):
        np.testing.assert_array_equal(below, above[::2, ::2])


def test_slide_detections_are_whole_image_detections_once_each(slide_file):
    """Peaks of a patch classifier's map, found tile by tile with the detection halo and kept in their tile's
    core only, are exactly the peaks of the whole-image map: none lost at a seam, none found twice."""
    import torch

    from medconv.detect.peaks import detect
    from medconv.detect.slides import detection_halo, slide_detections

    maker, slide = tiny_network("patch"), open_slide(slide_file[0])
    width, height = slide.sizes[1]
    image = slide.read(1, 0, 0, width, height).transpose(2, 0, 1).astype(np.float32) / 255.0
    whole_map = maker(torch.from_numpy(image))[1].numpy()
    params = {"sigma": 2.0, "min_distance": 4, "threshold": float(np.quantile(whole_map, 0.9))}
    whole = detect(whole_map, params)
    halo = detection_halo(8, params)
    tiled, mapped = slide_detections(slide, 1, 128, halo, maker.arrays, 3, params, min_tissue=0.0)
    assert mapped == 48 and len(whole) > 20
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("kind", ["unet", "patch"])
def test_tiles_batched_give_the_maps_and_detections_of_one_tile_at_a_time(slide_file, tmp_path, kind):
    """Level 2 (512 x 384) in 35 tiles of 80 px (the last column 32 px wide, the last row 64 px high; regions
    clipped at the slide's edges): up to N = 3 tiles whose regions have one shape go through the network together
    (a run of 5 as 3 + 2), never more, and the slide map (segment) and the detections (detect) are those of one
    tile at a time, for a U-Net and a patch classifier by exact dense scanning."""
    from medconv.detect.slides import detection_halo, slide_detections
    from medconv.infer.slides import slide_maps

    maker, slide = tiny_network(kind), open_slide(slide_file[0])
    batches, maps, detected = {1: [], 3: []}, {}, {}
    for n, shapes in batches.items():
        def recorded(images, shapes=shapes):
            shapes.append(images.shape)
            return maker.arrays(images)
        stats = slide_maps(slide, 2, 80, 16, recorded, 1, 3, tmp_path / f"map{n}.tif", min_tissue=0.0, floats=True,
                           batch=n)
        maps[n] = tifffile.imread(tmp_path / f"map{n}.tif")
        params = {"sigma": 1.0, "min_distance": 3, "threshold": float(np.quantile(maps[1], 0.9))}
        detected[n] = slide_detections(slide, 2, 80, detection_halo(8, params), maker.arrays, 3, params,
                                       min_tissue=0.0, batch=n)
    assert stats["tissue_tiles"] == 35 and 35 % 3
    sizes = [shape[0] for shape in batches[3]]
    assert sum(sizes) == 35 and max(sizes) == 3 and {1, 2} <= set(sizes) and len(batches[1]) == 35
    assert len({shape[2:] for shape in batches[3]}) == 9  # 3 widths (first, inner, last column) x 3 heights
    assert np.abs(maps[3] - maps[1]).max() <= 1e-6 and maps[1].std() > 0
    (one, tiles_one), (three, tiles_three) = detected[1], detected[3]
    assert tiles_one == tiles_three == 35 and len(one) > 10
    one, three = (found[np.lexsort((found[:, 1], found[:, 0]))] for found in (one, three))  # equal scores: by place
    np.testing.assert_array_equal(three[:, :2], one[:, :2])
    np.testing.assert_allclose(three[:, 2], one[:, 2], atol=1e-6)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("kind, method, tta", [("patch", "sliding", "none"), ("patch", "dense", "d4"),
                                               ("unet", "auto", "flip")])
def test_a_batch_of_images_has_the_maps_of_each_alone(kind, method, tta):
    """MapMaker.arrays on images (N, C, H, W): the sliding window (which maps them one by one), exact dense
    scanning under d4 test-time augmentation and a U-Net under flips give each image the map it gets alone."""
    import torch

    maker = tiny_network(kind, method, tta)
    images = np.random.default_rng(0).random((3, 3, 24, 20), dtype=np.float32)
    together = maker.arrays(images)
    assert together.shape == (3, 2, 24, 20) and together.dtype == np.float32
    for image, posteriors in zip(images, together):
        np.testing.assert_allclose(posteriors, maker(torch.from_numpy(image)).numpy(), atol=1e-6)


@pytest.mark.usefixtures("one_torch_thread")
def test_tile_batch_on_the_command_line_maps_and_detects_as_one_tile_at_a_time(slide_file, tmp_path):
    """segment predict and detect predict --slide-level 2 --tile-batch 3 write the map, mask and detections of
    --tile-batch 1 (the CPU's default) and say how many tiles went at a time; their help states the defaults."""
    import json

    import torch
    from conftest import run_in_process
    from test_bad_input import save_run

    from medconv.infer.tiles import GPU_TILE_BATCH
    from medconv.segment.config import SegmentConfig

    torch.manual_seed(0)
    patch, runs = {"widths": [4], "kernels": [3], "hidden": [8]}, {}
    for name, dataset in (("seg", "isbi2012"), ("det", "crchistophenotypes")):
        cfg = SegmentConfig(dataset=dataset, patch=15, model_options=patch, epochs=1).validate()
        save_run(tmp_path / name, "patch-cnn", patch, 3, 15, ["background", "tissue"],
                 {"task": "segmentation", "mode": "patch", "patch": 15, "tile": 128, "config": cfg.to_dict()})
    (tmp_path / "det" / "detect.json").write_text(json.dumps({"sigma": 1.0, "min_distance": 3, "threshold": 0.5,
                                                              "tta": "none", "tolerance": 6.0}))
    for n in ("1", "3"):
        done = run_in_process("segment", "predict", tmp_path / "seg", slide_file[0], "--slide-level", "2",
                              "--slide-tile", "80", "--tile-batch", n, "--allow-unfinished", "--out", tmp_path / n)
        assert done.returncode == 0 and f"(up to {n} at a time)" in done.stdout, done.stderr
        found = run_in_process("detect", "predict", tmp_path / "det", slide_file[0], "--slide-level", "2",
                               "--slide-tile", "80", "--tile-batch", n, "--allow-unfinished", "--device", "cpu",
                               "--out", tmp_path / n / "found.csv")
        assert found.returncode == 0 and f"up to {n} at a time" in found.stderr, found.stderr
        runs[n] = [levels_of(tmp_path / n / f"disc_{name}.tif")[0] for name in ("prob", "mask")]
        with open(tmp_path / n / "found.csv") as rows:
            runs[n].append(list(csv.DictReader(rows)))
    (prob, mask, found), (prob3, mask3, found3) = runs["1"], runs["3"]
    # batches may sum in another order (about 1e-7): uint16 maps within 1, masks equal away from the threshold
    assert np.abs(prob.astype(int) - prob3.astype(int)).max() <= 1
    sure = np.abs(prob.astype(int) - round(0.5 * 65535)) > 2
    assert np.array_equal(mask[sure], mask3[sure]) and sure.any()
    found, found3 = (sorted(rows, key=lambda r: (float(r["x"]), float(r["y"]))) for rows in (found, found3))
    assert len(found) > 10 and [(r["x"], r["y"]) for r in found] == [(r["x"], r["y"]) for r in found3]
    np.testing.assert_allclose([float(r["score"]) for r in found3], [float(r["score"]) for r in found], atol=1e-6)
    assert "up to 1 at a time" in run_in_process("segment", "predict", tmp_path / "seg", slide_file[0],
                                                  "--slide-level", "2", "--slide-tile", "80", "--allow-unfinished",
                                                  "--device", "cpu", "--out", tmp_path / "default").stdout
    for verb in ("segment", "detect"):  # the help states infer.tiles' defaults
        assert f"(default: {GPU_TILE_BATCH} on a GPU, 1 on the CPU)" in " ".join(
            run_in_process(verb, "predict", "--help").stdout.split())


def write_pyramid(out, tiles, shape, dtype, tile, reduce):
    """As slide_maps writes its maps: level 0's tiles streamed into a scratch file beside `out`, then the pyramid
    from it (infer.pyramid); the levels' shapes."""
    from medconv.infer.pyramid import pyramid_from_file, scratch_files, write_tiled

    with scratch_files(out) as scratch:
        level0 = scratch()
        write_tiled(level0, tiles, shape, dtype, tile)
        return pyramid_from_file(out, level0, reduce)


@pytest.mark.parametrize("dtype, reduce", [(np.uint16, "mean"), (np.float32, "mean"), (np.uint8, "nearest")])
def test_write_pyramid_halves_every_level_by_its_reduction(tmp_path, dtype, reduce):
    """A 701 x 1003 array (odd sides, partial tiles) streamed as tiles of 128: 4 levels (701 x 1003 down to
    88 x 126, the first within one tile), each the 2 x 2 means (rounded for integers) or every other pixel of the
    level above, as SubIFDs of level 0 in a zlib-compressed tiled BigTIFF; no scratch file is left."""
    rng, tile = np.random.default_rng(0), 128
    array = (rng.random((701, 1003)) * (255 if dtype == np.uint8 else 65535 if dtype == np.uint16 else 1)).astype(dtype)
    tiles = (np.pad(array[y:y + tile, x:x + tile], ((0, max(0, y + tile - 701)), (0, max(0, x + tile - 1003))))
             for y in range(0, 701, tile) for x in range(0, 1003, tile))
    shapes = write_pyramid(tmp_path / "pyramid.tif", tiles, array.shape, dtype, tile, reduce)
    assert shapes == [(701, 1003), (351, 502), (176, 251), (88, 126)]
    expected = [array]
    for _ in shapes[1:]:
        above = expected[-1]
        if reduce == "nearest":
            expected.append(above[::2, ::2])
        else:
            mean = block_mean(above)
            expected.append((np.round(mean) if dtype == np.uint16 else mean).astype(dtype))
    levels = levels_of(tmp_path / "pyramid.tif")
    assert len(levels) == 4
    for got, want in zip(levels, expected):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
    with tifffile.TiffFile(tmp_path / "pyramid.tif") as tiff:
        page = tiff.pages[0]
        assert tiff.is_bigtiff and page.is_tiled and page.tile == (tile, tile) and len(page.subifds) == 3
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert page.photometric == tifffile.PHOTOMETRIC.MINISBLACK
    assert [p.name for p in tmp_path.iterdir()] == ["pyramid.tif"]


def test_write_pyramid_leaves_nothing_when_its_tiles_fail(tmp_path):
    """An error while level 0 streams in leaves neither the output nor a scratch file."""
    def tiles():
        yield np.zeros((64, 64), np.uint8)
        raise RuntimeError("the network failed")
    with pytest.raises(RuntimeError, match="the network failed"):
        write_pyramid(tmp_path / "pyramid.tif", tiles(), (100, 200), np.uint8, 64, "nearest")
    assert list(tmp_path.iterdir()) == []
