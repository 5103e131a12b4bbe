"""`segment predict --slide-level L`: a two-class segmentation run over whole-slide images, tile by tile over the
tissue (infer.slides), the foreground posterior written as a tiled pyramidal TIFF (NAME_prob.tif) and its mask at
the threshold of whole-image `segment predict` (NAME_mask.tif), without holding the slide or the map in memory."""
from __future__ import annotations

import math
from pathlib import Path

from ..data.slides import ALIGN, check_tiling, open_slide, receptive_radius
from ..errors import UserError
from ..infer.slides import slide_maps
from ..infer.tiles import default_tile_batch
from ..training.engine import resolve_device
from ..training.runstate import check_finished
from .evaluate import foreground_threshold, load_segmenter
from .maps import MapMaker


def predict_slide(run_dir: str | Path, path: str | Path, out_dir: str | Path, level: int = 0, tile: int = 512,
                  halo: int | None = None, tta: str = "none", device: str = "auto", floats: bool = False,
                  allow_unfinished: bool = False, threshold: float | None = None,
                  tile_batch: int | None = None) -> dict:
    """OUT/NAME_prob.tif: the foreground posterior over `level` of the slide at `path` (uint16, or float32 with
    `floats`), and OUT/NAME_mask.tif: uint8 255 where it is above `threshold` (default: as whole-image `segment
    predict`, the one chosen on the run's validation images, else 0.5), else 0; both tiled pyramidal TIFFs.
    `halo` defaults to the network's receptive radius rounded up to a multiple of 16; up to `tile_batch` tiles of
    one shape go through the network at a time (None: infer.tiles.default_tile_batch of the device). Returns
    slide_maps' figures with the files written ("file", "mask") and the halo, threshold and tile batch used."""
    check_finished(run_dir, allow_unfinished, "best")
    device = str(resolve_device(device))
    model, meta = load_segmenter(run_dir, "best", device)
    if len(meta["classes"]) != 2:
        raise UserError(f"--slide-level: slide maps are written for two-class runs; {run_dir} has "
                        f"{len(meta['classes'])} classes")
    radius = receptive_radius(meta)
    halo = halo if halo is not None else math.ceil(radius / ALIGN) * ALIGN
    check_tiling(tile, halo, radius)
    threshold = foreground_threshold(run_dir, threshold)
    slide = open_slide(path)
    try:
        out, mask = (Path(out_dir) / f"{Path(path).stem}_{name}.tif" for name in ("prob", "mask"))
        maker, batch = MapMaker(model, meta, "auto", tta, device=device), tile_batch or default_tile_batch(device)
        stats = slide_maps(slide, level, tile, halo, maker.arrays, 1, meta["in_channels"], out, floats=floats,
                           mask_out=mask, threshold=threshold, batch=batch)
    finally:
        slide.close()
    return {**stats, "file": str(out), "mask": str(mask), "halo": halo, "threshold": threshold, "tile_batch": batch}
