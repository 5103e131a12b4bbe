"""Whole-slide images in bounded memory: pyramidal TIFF, SVS and the other formats tiffslide reads (tifffile
underneath), opened lazily. A slide has levels (level 0 the full resolution, each further one a downsample),
microns per pixel, and regions read on demand; a tissue mask comes from a low-resolution level (Otsu's
threshold on the saturation, the usual recipe for H&E: glass is bright and grey, tissue coloured), and tiles
cover the tissue only.

Coordinates: (x, y) = (column, row) in pixels of the level named, as in OpenSlide's API; sizes (width, height).
Arrays are (H, W, 3) uint8 RGB.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from medconv.data.images import one_line, to_channels
from medconv.errors import UserError

TISSUE_SIDE = 2048  # the tissue mask is computed on the first level whose longer side is at most this
MIN_TISSUE_FRACTION = 0.05  # a tile is read when at least this fraction of it is tissue
ALIGN = 16  # tile and halo sides are multiples of this, so a U-Net's pooling grid stays the whole slide's
UNET_RADIUS = 128  # px a U-Net's output depends on around it (4 down-sampling steps; tests/test_slides.py checks
                   # that tiles with this halo give the whole-image map)


def receptive_radius(meta: dict) -> int:
    """Pixels around a pixel that its posterior depends on: half a patch classifier's patch, or UNET_RADIUS,
    from a checkpoint's metadata."""
    return int(meta["patch"]) // 2 if meta.get("mode") == "patch" else UNET_RADIUS


@dataclass
class Slide:
    """An open whole-slide image. sizes: (width, height) per level; downsamples: level-0 pixels per level pixel;
    mpp: microns per level-0 pixel (None when the file does not say)."""

    path: str
    handle: object
    sizes: list[tuple[int, int]]
    downsamples: list[float]
    mpp: float | None

    @property
    def levels(self) -> int:
        return len(self.sizes)

    def check_level(self, level: int) -> int:
        if not 0 <= level < self.levels:
            listed = ", ".join(f"{k}: {w}x{h}" for k, (w, h) in enumerate(self.sizes))
            raise UserError(f"--level {level}: {self.path} has levels 0-{self.levels - 1} ({listed})")
        return level

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """The region (H, W, 3) uint8 of `level` whose top-left pixel is (x, y) in that level's pixels; parts
        outside the slide are white (glass)."""
        self.check_level(level)
        scale = self.downsamples[level]
        region = self.handle.read_region((int(round(x * scale)), int(round(y * scale))), level, (width, height),
                                         as_array=True)
        region = np.asarray(region)
        if region.ndim == 3 and region.shape[2] == 4:  # RGBA: outside the slide is transparent
            rgb, alpha = region[..., :3], region[..., 3:4]
            region = np.where(alpha > 0, rgb, 255).astype(np.uint8)
        return region

    def close(self) -> None:
        self.handle.close()


def open_slide(path: str | Path) -> Slide:
    """A whole-slide file opened by tiffslide (levels, downsamples, microns per pixel); one clear line when it
    cannot be read as a slide."""
    import tiffslide

    path = Path(path)
    if not path.is_file():
        raise UserError(f"slide {path} not found")
    try:
        handle = tiffslide.TiffSlide(str(path))
        sizes = [tuple(int(v) for v in s) for s in handle.level_dimensions]
        downsamples = [float(d) for d in handle.level_downsamples]
        mpp = handle.properties.get("tiffslide.mpp-x")
    except Exception as exc:  # any decoder failure: not a readable slide
        raise UserError(f"cannot read slide {path}: {one_line(exc)}") from None
    return Slide(str(path), handle, sizes, downsamples, float(mpp) if mpp else None)


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation (H, W) in [0, 1] of (H, W, 3) uint8 RGB: (max - min) / max, 0 where max is 0."""
    a = rgb.astype(np.float32)
    top, bottom = a.max(axis=2), a.min(axis=2)
    return np.where(top > 0, (top - bottom) / np.maximum(top, 1), 0.0)


def without_small(mask: np.ndarray, size: int) -> np.ndarray:
    """`mask` (H, W) bool without its 8-connected components of fewer than `size` pixels (scipy's labelling)."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    return mask & (np.bincount(labels.ravel()) >= size)[labels]


def tissue_mask(slide: Slide, side: int = TISSUE_SIDE) -> tuple[np.ndarray, int]:
    """(mask (H, W) bool of tissue, the level it is on): the first level whose longer side is at most `side`
    (else the last), read whole; tissue = saturation above Otsu's threshold (scikit-image), small specks and
    holes removed."""
    from skimage.filters import threshold_otsu

    level = next((k for k, (w, h) in enumerate(slide.sizes) if max(w, h) <= side), slide.levels - 1)
    width, height = slide.sizes[level]
    sat = saturation(slide.read(level, 0, 0, width, height))
    if float(sat.max()) - float(sat.min()) < 1e-3:  # one colour: no threshold separates anything
        return np.zeros(sat.shape, bool), level
    mask = sat > threshold_otsu(sat)
    speck = max(4, mask.size // 20000)
    return ~without_small(~without_small(mask, speck), speck), level  # specks of tissue, then holes in it


@dataclass(frozen=True)
class Tile:
    """A tile of a level: its core (x, y, width, height), the region it is computed on with a halo around it
    (clipped to the slide), in that level's pixels."""

    x: int
    y: int
    width: int
    height: int
    halo: int

    def region(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """(x, y, width, height) of the core grown by the halo, clipped to a level of `size` (width, height)."""
        x0, y0 = max(0, self.x - self.halo), max(0, self.y - self.halo)
        x1, y1 = min(size[0], self.x + self.width + self.halo), min(size[1], self.y + self.height + self.halo)
        return x0, y0, x1 - x0, y1 - y0


def check_tiling(tile: int, halo: int, radius: int) -> None:
    """Refuse tiles off the U-Net grid or smaller than the network's receptive field, and a halo smaller than its
    receptive radius (seams would show), in one line each."""
    if tile < ALIGN or tile % ALIGN or halo % ALIGN:
        raise UserError(f"--slide-tile {tile} and --halo {halo}: multiples of {ALIGN} (the U-Net's down-sampling "
                        "grid)")
    if tile < 2 * radius + 1:
        raise UserError(f"--slide-tile {tile} is smaller than the network's receptive field ({2 * radius + 1} px); "
                        f"use at least {-(-(2 * radius + 1) // ALIGN) * ALIGN}")
    if halo < radius:
        raise UserError(f"a halo of {halo} px is smaller than the network's receptive radius ({radius} px): tiles "
                        f"would not see what whole-image inference sees; use a halo of at least {radius}")


def tile_image(slide: Slide, level: int, tile: Tile, channels: int) -> tuple[np.ndarray, int, int]:
    """A tile's region with its halo as the network's input: float32 (channels, H, W) in [0, 1], and the
    region's top-left (x0, y0) in the level's pixels."""
    x0, y0, w, h = tile.region(slide.sizes[level])
    return to_channels(slide.read(level, x0, y0, w, h).astype(np.float32) / 255.0, channels), x0, y0


def tissue_tiles(slide: Slide, level: int, tile: int, halo: int = 0,
                 mask: tuple[np.ndarray, int] | None = None,
                 min_fraction: float = MIN_TISSUE_FRACTION) -> Iterator[Tile]:
    """The tiles (tile x tile cores, row by row) of `level` holding at least `min_fraction` tissue by the
    tissue mask (computed when not given); cores at the right and bottom edges are cut to the level."""
    slide.check_level(level)
    if tile < 1 or halo < 0:
        raise UserError(f"--tile must be at least 1 and the halo at least 0, got {tile} and {halo}")
    tissue, mask_level = mask if mask is not None else tissue_mask(slide)
    width, height = slide.sizes[level]
    scale = slide.downsamples[level] / slide.downsamples[mask_level]  # mask pixels per level pixel
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            w, h = min(tile, width - x), min(tile, height - y)
            rows = slice(int(y * scale), max(int(y * scale) + 1, math.ceil((y + h) * scale)))
            cols = slice(int(x * scale), max(int(x * scale) + 1, math.ceil((x + w) * scale)))
            under = tissue[rows, cols]
            if under.size and under.mean() >= min_fraction:
                yield Tile(x, y, w, h, halo)
