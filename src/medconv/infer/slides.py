"""Slide-level maps in bounded memory: a whole-slide image (data.slides) is cut into tiles over its tissue, each
read with a halo and mapped by a function of images (N, C, H, W) -> posteriors (N, K, H, W) (segment.maps.MapMaker's
arrays), a few tiles of one shape at a time (infer.tiles), its core kept, and the cores written one by one as the
tiles of a tiled TIFF, never the whole map at once; that file is then written again as a tiled pyramidal TIFF
(infer.pyramid), with a mask beside it at a threshold.

With a halo at least the network's receptive radius (a patch classifier: half its patch; a U-Net: its receptive
field, and tiles on its down-sampling grid, multiples of 16), a core's posteriors are those whole-image inference
gives at those pixels: the seams do not show. Glass (tiles without tissue) is written as 0.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..data.slides import Slide, Tile, tile_image, tissue_mask, tissue_tiles
from ..fileio import writes_here
from ..progress import make_console, progress_bar
from .pyramid import pyramid_from_file, scratch_files, write_tiled
from .tiles import Maps, mapped_tiles


def slide_maps(slide: Slide, level: int, tile: int, halo: int, maps: Maps, channel: int, channels: int,
               out: str | Path, min_tissue: float = 0.05, floats: bool = False, mask_out: str | Path | None = None,
               threshold: float = 0.5, batch: int = 1) -> dict:
    """Write the posterior of class `channel` over `level` of `slide` as a tiled pyramidal TIFF at `out`
    (infer.pyramid: reduced levels by 2 x 2 means): uint16 round(p x 65535), or float32 with `floats`; tiles of
    tile x tile, glass 0. With `mask_out`, also the mask there: uint8 255 where p > `threshold`, else 0, same tiles,
    reduced levels by nearest pixel. Tiles are computed over the tissue only, once for both files (level 0 of
    float32 p goes to a scratch file beside `out`, read back tile by tile for each), up to `batch` at a time
    (mapped_tiles); `maps` takes images of `channels` channels. Returns {"tiles", "tissue_tiles", "seconds",
    "tiles_per_second"} of the mapping pass (the pyramids after it not counted), "size" (width, height) and
    "levels" (of the pyramids)."""
    slide.check_level(level)
    width, height = slide.sizes[level]
    mask = tissue_mask(slide)
    todo = list(tissue_tiles(slide, level, tile, halo, mask, min_tissue))  # row by row, as the grid
    grid = tile_origins(slide.sizes[level], tile)
    console, started = make_console(), time.time()

    def cores(bar, task):
        mapped, wanted = mapped_tiles(slide, level, todo, maps, channels, batch), {(t.x, t.y) for t in todo}
        for x, y in grid:
            core = np.zeros((tile, tile), np.float32)
            if (x, y) in wanted:
                t, posteriors, x0, y0 = next(mapped)
                assert (t.x, t.y) == (x, y), "tiles mapped out of the grid's order"
                core[:t.height, :t.width] = posteriors[channel, t.y - y0:t.y - y0 + t.height,
                                                       t.x - x0:t.x - x0 + t.width]
                bar.update(task, advance=1)
            yield core

    stats, levels = tile_stats(len(grid), len(todo), started), []
    if writes_here():  # as atomic_write: ranks other than 0 of a torchrun launch map nothing, but inside own_files
        with scratch_files(out) as scratch:
            posterior = scratch()
            with progress_bar(console) as bar:
                task = bar.add_task("slide tiles", total=len(todo), status="")
                write_tiled(posterior, cores(bar, task), (height, width), np.float32, tile)
            stats = tile_stats(len(grid), len(todo), started)  # the mapping pass alone
            levels = pyramid_from_file(out, posterior, "mean", None if floats else probability_uint16,
                                       np.float32 if floats else np.uint16)
            if mask_out is not None:
                pyramid_from_file(mask_out, posterior, "nearest", lambda p: (p > threshold) * np.uint8(255), np.uint8)
    return {**stats, "size": [width, height], "levels": len(levels)}


def probability_uint16(p: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] as uint16 round(p x 65535), as segment.postprocess.save_probability writes them."""
    return np.round(p.astype(np.float64) * 65535).astype(np.uint16)


def tile_origins(size: tuple[int, int], tile: int) -> list[tuple[int, int]]:
    """Top-left corners (x, y) of the tile x tile tiles of a level of `size` (width, height), row by row."""
    return [(x, y) for y in range(0, size[1], tile) for x in range(0, size[0], tile)]


def tile_stats(tiles: int, tissue: int, started: float) -> dict:
    """{"tiles", "tissue_tiles", "seconds", "tiles_per_second"} of `tissue` tiles computed out of `tiles` since
    `started` (time.time())."""
    seconds = time.time() - started
    return {"tiles": tiles, "tissue_tiles": tissue, "seconds": seconds,
            "tiles_per_second": tissue / seconds if seconds else 0.0}


def halo_image(slide: Slide, level: int, tile: Tile, channels: int = 3) -> np.ndarray:
    """A tile's core with its whole halo on every side, float32 (channels, height + 2 halo, width + 2 halo) in
    [0, 1], pixel [0, 0] at the level's (x - halo, y - halo): the slide's own pixels, mirrored (np.pad's
    "reflect", as training's patches are cut, data.nuclei.extract_patches) where the halo passes the slide's
    edges. The halo must be smaller than the level's sides."""
    image, x0, y0 = tile_image(slide, level, tile, channels)
    top, left = tile.halo - (tile.y - y0), tile.halo - (tile.x - x0)
    bottom = tile.y + tile.height + tile.halo - (y0 + image.shape[1])
    right = tile.x + tile.width + tile.halo - (x0 + image.shape[2])
    if top or left or bottom or right:
        image = np.pad(image, ((0, 0), (top, bottom), (left, right)), mode="reflect")
    return image
