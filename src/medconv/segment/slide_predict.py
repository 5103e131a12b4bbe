"""`segment predict --slide-level L`: a two-class segmentation run over whole-slide images, tile by tile over the
tissue (infer.slides), the foreground posterior written as a tiled TIFF (NAME_prob.tif) without holding the slide
or the map in memory."""
from __future__ import annotations

import math
from pathlib import Path

from ..data.slides import ALIGN, check_tiling, open_slide, receptive_radius
from ..errors import UserError
from ..infer.slides import slide_maps
from ..training.engine import resolve_device
from ..training.runstate import check_finished
from .evaluate import load_segmenter
from .maps import MapMaker

def predict_slide(run_dir: str | Path, path: str | Path, out_dir: str | Path, level: int = 0, tile: int = 512,
                  halo: int | None = None, tta: str = "none", device: str = "auto", floats: bool = False,
                  allow_unfinished: bool = False) -> dict:
    """OUT/NAME_prob.tif: the foreground posterior over `level` of the slide at `path` (uint16, or float32 with
    `floats`); `halo` defaults to the network's receptive radius rounded up to a multiple of 16. Returns
    slide_maps' figures with the file written."""
    check_finished(run_dir, allow_unfinished, "best")
    model, meta = load_segmenter(run_dir, "best", str(resolve_device(device)))
    if len(meta["classes"]) != 2:
        raise UserError(f"--slide-level: slide maps are written for two-class runs; {run_dir} has "
                        f"{len(meta['classes'])} classes")
    radius = receptive_radius(meta)
    halo = halo if halo is not None else math.ceil(radius / ALIGN) * ALIGN
    check_tiling(tile, halo, radius)
    slide = open_slide(path)
    try:
        out = Path(out_dir) / f"{Path(path).stem}_prob.tif"
        maker = MapMaker(model, meta, "auto", tta, device=str(resolve_device(device)))
        stats = slide_maps(slide, level, tile, halo, maker, 1, meta["in_channels"], out, floats=floats)
    finally:
        slide.close()
    return {**stats, "file": str(out), "halo": halo}
