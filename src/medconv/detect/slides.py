"""`detect predict --slide-level L`: detections over a whole slide, tile by tile over its tissue. Each tile is
read with a halo (the network's receptive radius, the smoothing's reach and the peaks' minimum distance), its map
searched for peaks, and only the peaks inside its core kept: every location lies in one core, so nothing is found
twice, and with that halo each tile finds exactly the peaks whole-image detection finds there. Non-maximum
suppression, which reaches across cores, runs once over the merged peaks."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.slides import ALIGN, Slide, check_tiling, open_slide, receptive_radius, tissue_mask, tissue_tiles
from ..infer.tiles import mapped_tiles
from ..progress import make_console, progress_bar
from .peaks import detect, peaks_to_csv_rows, suppress


def detection_halo(receptive_radius: int, params: dict) -> int:
    """The context a tile needs: receptive radius + the Gaussian's reach (4 sigma, scipy's truncation) + the
    peaks' minimum distance, rounded up to a multiple of 16."""
    need = receptive_radius + math.ceil(4 * params["sigma"]) + int(params["min_distance"])
    return math.ceil(need / ALIGN) * ALIGN


def slide_detections(slide: Slide, level: int, tile: int, halo: int, maps: Callable[[np.ndarray], np.ndarray],
                     channels: int, params: dict, min_tissue: float = 0.05, batch: int = 1) -> tuple[np.ndarray, int]:
    """Detections (N, 3) (row, col, score) in `level`'s pixels, highest score first, and the number of tiles
    mapped. `maps`: images (n, channels, H, W) float32 in [0, 1] -> posteriors (n, K, H, W) numpy, given up to
    `batch` tiles of one shape at a time (infer.tiles.mapped_tiles)."""
    tiles = list(tissue_tiles(slide, level, tile, halo, tissue_mask(slide), min_tissue))
    found = []
    with progress_bar(make_console(), disable=len(tiles) < 2) as bar:
        task = bar.add_task("slide tiles", total=len(tiles), status="")
        for t, posteriors, x0, y0 in mapped_tiles(slide, level, tiles, maps, channels, batch):
            peaks = detect(posteriors[1], {**params, "nms_radius": None})
            rows, cols = peaks[:, 0] + y0, peaks[:, 1] + x0
            inside = (rows >= t.y) & (rows < t.y + t.height) & (cols >= t.x) & (cols < t.x + t.width)
            found.append(np.column_stack([rows, cols, peaks[:, 2]])[inside])
            bar.advance(task)
    peaks = np.concatenate(found) if found else np.zeros((0, 3))
    peaks = peaks[np.lexsort((peaks[:, 1], peaks[:, 0], -peaks[:, 2]))]
    radius = params.get("nms_radius")
    return (suppress(peaks, radius) if radius else peaks), len(tiles)


def predict_slides(run_dir: str | Path, inputs: list[str], level: int, tile: int, halo: int | None,
                   maps: Callable[[np.ndarray], np.ndarray], channels: int, params: dict,
                   log: Callable[[str], None], batch: int = 1) -> list[dict]:
    """Rows {image, x, y, score} of detections on whole slides: x, y 1-based pixels of level 0 (a detection
    at level L scaled by its downsample), over `level` tile by tile, `batch` tiles at a time (slide_detections)."""
    rows = []
    for path in inputs:
        slide = open_slide(path)
        try:
            slide.check_level(level)
            meta = json.loads((Path(run_dir) / "checkpoints" / "best.json").read_text())  # torch-free
            radius = receptive_radius(meta)
            reach = halo if halo is not None else detection_halo(radius, params)
            check_tiling(tile, reach, radius)
            tic = time.perf_counter()
            peaks, mapped = slide_detections(slide, level, tile, reach, maps, channels, params, batch=batch)
            scale = slide.downsamples[level]
            peaks[:, :2] *= scale
            rows += peaks_to_csv_rows(Path(path).name, peaks)
            log(f"{Path(path).name}: {len(peaks)} detections, {mapped} tiles of {tile} px at level {level} with a "
                f"halo of {reach} px, up to {batch} at a time, in {time.perf_counter() - tic:.1f} s")
        finally:
            slide.close()
    return rows
