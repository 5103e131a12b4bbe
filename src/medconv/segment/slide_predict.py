"""`segment predict --slide-level L`: a two-class segmentation run over whole-slide images, tile by tile over the
tissue (infer.slides), the foreground posterior written as a tiled pyramidal TIFF (NAME_prob.tif) and its mask at
the threshold of whole-image `segment predict` (NAME_mask.tif), without holding the slide or the map in memory."""
from __future__ import annotations

import math
from pathlib import Path

from ..data.slides import ALIGN, check_tiling, open_slide, receptive_radius
from ..errors import UserError
from ..infer.slides import slide_maps
from ..training.engine import resolve_device
from ..training.runstate import check_finished
from .evaluate import foreground_threshold, load_segmenter
from .maps import MapMaker


def predict_slide(run_dir: str | Path, path: str | Path, out_dir: str | Path, level: int = 0, tile: int = 512,
                  halo: int | None = None, tta: str = "none", device: str = "auto", floats: bool = False,
                  allow_unfinished: bool = False, threshold: float | None = None) -> dict:
    """OUT/NAME_prob.tif: the foreground posterior over `level` of the slide at `path` (uint16, or float32 with
    `floats`), and OUT/NAME_mask.tif: uint8 255 where it is above `threshold` (default: as whole-image `segment
    predict`, the one chosen on the run's validation images, else 0.5), else 0; both tiled pyramidal TIFFs.
    `halo` defaults to the network's receptive radius rounded up to a multiple of 16. Returns slide_maps' figures
    with the files written ("file", "mask") and the halo and threshold used."""
    check_finished(run_dir, allow_unfinished, "best")
    model, meta = load_segmenter(run_dir, "best", str(resolve_device(device)))
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
        maker = MapMaker(model, meta, "auto", tta, device=str(resolve_device(device)))
        stats = slide_maps(slide, level, tile, halo, maker, 1, meta["in_channels"], out, floats=floats,
                           mask_out=mask, threshold=threshold)
    finally:
        slide.close()
    return {**stats, "file": str(out), "mask": str(mask), "halo": halo, "threshold": threshold}
