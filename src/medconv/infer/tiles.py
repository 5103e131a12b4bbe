"""Tiles of a slide level mapped a few at a time: each tile's region (its core with the halo, data.slides) read
from the slide and passed through a function of images (N, C, H, W) -> posteriors (N, K, H, W), tiles whose regions
have one shape together. Kept apart from infer.slides (and its pyramid writer's tifffile and zarr) so that
`detect predict` imports it on plain images at no cost."""
from __future__ import annotations

import itertools
from typing import Callable, Iterable, Iterator

import numpy as np

from ..data.slides import Slide, Tile, tile_image

Maps = Callable[[np.ndarray], np.ndarray]  # images (N, C, H, W) float32 in [0, 1] -> posteriors (N, K, H, W)
# tiles per pass of the network by default on a GPU (cli.options' --tile-batch help says so); 1 on the CPU, where
# batching measured no faster (2 cores) and each more tile costs memory (docs/verbs.md gives the measurement)
GPU_TILE_BATCH = 4


def mapped_tiles(slide: Slide, level: int, tiles: Iterable[Tile], maps: Maps, channels: int,
                 batch: int = 1) -> Iterator[tuple[Tile, np.ndarray, int, int]]:
    """(tile, posteriors (K, h, w) of its region with the halo, the region's top-left x0, y0 in the level's pixels)
    of each of `tiles`, in order. A tile's region is the slide's own pixels (data.slides.tile_image; clipped, not
    mirrored, at the slide's edges), so regions at the edges are smaller: consecutive tiles whose regions have one
    shape go through `maps` together, up to `batch` at a time, and no region is padded, so each tile gets the
    posteriors it gets alone (to float rounding, about 1e-7 for a U-Net: a batched convolution may sum in another
    order). At most `batch` regions (and their stacked copy) are held at once."""
    size = slide.sizes[level]
    for _, same in itertools.groupby(tiles, key=lambda t: t.region(size)[2:]):
        while group := list(itertools.islice(same, batch)):
            read = [tile_image(slide, level, t, channels) for t in group]  # (image (C, h, w), x0, y0) each
            posteriors = maps(np.stack([image for image, _, _ in read]))
            for t, (_, x0, y0), p in zip(group, read, posteriors):
                yield t, p, x0, y0


def default_tile_batch(device: str) -> int:
    """Tiles mapped together when the user gives no number: GPU_TILE_BATCH on a GPU (cuda, cuda:N), 1 elsewhere."""
    return GPU_TILE_BATCH if str(device).startswith("cuda") else 1
