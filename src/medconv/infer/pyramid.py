"""Tiled pyramidal TIFF in bounded memory, as whole-slide viewers (QuPath, tiffslide) read it: level 0, (H, W),
arrives as tiles; each reduced level is half the one above (sides rounded up) until a level fits in one tile, and
is stored as a SubIFD of level 0 (subfiletype 1), so that tifffile's series[0].levels and tiffslide see one
pyramid. Single channel (minisblack), zlib-compressed, BigTIFF.

Memory holds a few tiles at a time: level 0 is streamed into a scratch tiled TIFF, each reduced level is built
into its own scratch file from 2 x 2 tiles of the level above (read lazily through tifffile's zarr store), and the
final file is written streaming every level's tiles from those files. Scratch files lie beside the output
(.NAME.*.tmp, which fileio.remove_leftovers clears after a crash) and are removed when done, also on error.

Reduction: "mean", the mean of each 2 x 2 block (rounded for integer dtypes), for maps of values such as
probabilities; "nearest", the block's top-left pixel ([::2, ::2]), for masks and labels. Where a side is odd the
last blocks hold 1 pixel across, and their mean is that of the pixels they hold.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import tifffile
import zarr

from ..fileio import TMP_SUFFIX, atomic_write

REDUCTIONS = ("mean", "nearest")
FORMAT = {"photometric": "minisblack", "compression": "zlib"}  # every file, scratch or not, also BigTIFF
SCRATCH_LEVEL = 1  # zlib level of the scratch files: read once, then removed

Source = Callable[[int, int], np.ndarray]  # (tile row, tile column) -> that tile's pixels inside the level


def check_reduction(reduce: str) -> None:
    """Refuse a reduction other than REDUCTIONS'."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"pyramid reduction {reduce!r}: expected one of {', '.join(REDUCTIONS)}")


def level_shapes(shape: tuple[int, int], tile: int) -> list[tuple[int, int]]:
    """(H, W) of every level of a pyramid whose level 0 is `shape` (H, W): each next level ceil(H / 2) x
    ceil(W / 2) of the one above, the last the first that fits in one tile x tile tile."""
    shapes = [(int(shape[0]), int(shape[1]))]
    while shapes[-1][0] > tile or shapes[-1][1] > tile:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def tile_grid(shape: tuple[int, int], tile: int) -> list[tuple[int, int]]:
    """(tile row, tile column) of the tiles of a level of `shape` (H, W), row by row (TIFF's tile order)."""
    return [(r, c) for r in range(-(-shape[0] // tile)) for c in range(-(-shape[1] // tile))]


def reduce_block(block: np.ndarray, how: str) -> np.ndarray:
    """A block (h, w) of a level halved to (ceil(h / 2), ceil(w / 2)), in its dtype: `how` "nearest" keeps
    block[::2, ::2]; "mean" takes the mean of each 2 x 2 block (of the pixels it holds where h or w is odd),
    rounded for integer dtypes."""
    if how == "nearest":
        return block[::2, ::2]
    h, w = block.shape
    even = np.pad(block, ((0, h % 2), (0, w % 2)), mode="edge")  # an odd side's last pixel, twice: its own mean
    mean = even.reshape(even.shape[0] // 2, 2, even.shape[1] // 2, 2).mean(axis=(1, 3), dtype=np.float64)
    return (np.round(mean) if np.issubdtype(block.dtype, np.integer) else mean).astype(block.dtype)


def reduced_source(above: Source, shape_above: tuple[int, int], tile: int, how: str) -> Source:
    """The tiles of the level below one whose tiles `above` gives (its shape (H, W) `shape_above`): tile (r, c)
    is reduce_block of tiles (2r, 2c) to (2r + 1, 2c + 1) of the level above, those inside it."""
    rows, cols = -(-shape_above[0] // tile), -(-shape_above[1] // tile)

    def source(r: int, c: int) -> np.ndarray:
        block = np.block([[above(i, j) for j in range(2 * c, min(2 * c + 2, cols))]
                          for i in range(2 * r, min(2 * r + 2, rows))])
        return reduce_block(block, how)
    return source


def file_source(array: zarr.Array, tile: int, convert: Callable[[np.ndarray], np.ndarray] | None = None) -> Source:
    """The tiles of a tiled TIFF opened as `array` (H, W) (open_tiled), each convert(tile) when given."""
    def source(r: int, c: int) -> np.ndarray:
        pixels = array[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile]
        return convert(pixels) if convert is not None else pixels
    return source


def full_tiles(source: Source, shape: tuple[int, int], tile: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    """Every tile (tile, tile) of a level of `shape` (H, W), row by row, those at its right and bottom edges
    padded with 0, as TIFF stores them."""
    for r, c in tile_grid(shape, tile):
        pixels = source(r, c)
        if pixels.shape != (tile, tile):
            padded = np.zeros((tile, tile), dtype)
            padded[:pixels.shape[0], :pixels.shape[1]] = pixels
            pixels = padded
        yield pixels.astype(dtype, copy=False)


def write_tiled(path: str | Path, tiles: Iterable[np.ndarray], shape: tuple[int, int], dtype: np.dtype,
                tile: int) -> None:
    """A scratch single-level tiled TIFF of `shape` (H, W) at `path` from its tiles (tile, tile) in row-major
    order (full_tiles), quickly compressed."""
    tifffile.imwrite(path, tiles, shape=shape, dtype=dtype, tile=(tile, tile),
                     bigtiff=True, compressionargs={"level": SCRATCH_LEVEL}, **FORMAT)


@contextmanager
def open_tiled(path: str | Path) -> Iterator[zarr.Array]:
    """A tiled TIFF's first page as a read-only zarr array (H, W) whose slices decode only the tiles they cover."""
    store = tifffile.imread(path, aszarr=True)
    try:
        yield zarr.open_array(store, mode="r")
    finally:
        store.close()


@contextmanager
def scratch_files(out: str | Path) -> Iterator[Callable[[], Path]]:
    """A maker of scratch file paths beside `out` (.NAME.XXXX.scratch.tmp); every one it made is removed on
    leaving, whether or not an error left it."""
    out, made = Path(out), []

    def new() -> Path:
        fd, path = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".scratch{TMP_SUFFIX}", dir=out.parent)
        os.close(fd)
        made.append(Path(path))
        return made[-1]
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield new
    finally:
        for path in made:
            path.unlink(missing_ok=True)


def pyramid_from_file(out: str | Path, level0: str | Path, reduce: str = "mean",
                      convert: Callable[[np.ndarray], np.ndarray] | None = None,
                      dtype: np.dtype | type | None = None) -> list[tuple[int, int]]:
    """Write `out` as a tiled pyramidal TIFF (through fileio.atomic_write) whose level 0 is the tiled TIFF
    `level0` (H, W), each of its tiles taken as convert(tile) (of `dtype`; default: as it is), and whose reduced
    levels are halved by `reduce` ("mean" or "nearest") down to one tile, with the tile size of `level0`.
    Returns the levels' shapes (H, W)."""
    check_reduction(reduce)
    with tifffile.TiffFile(level0) as tiff:
        tile, shape, stored = tiff.pages[0].tilelength, tiff.pages[0].shape, tiff.pages[0].dtype
    dtype = np.dtype(stored if dtype is None else dtype)
    shapes = level_shapes(shape, tile)
    with scratch_files(out) as scratch, ExitStack() as opened:
        sources = [file_source(opened.enter_context(open_tiled(level0)), tile, convert)]
        for above, below in zip(shapes, shapes[1:]):
            path = scratch()
            write_tiled(path, full_tiles(reduced_source(sources[-1], above, tile, reduce), below, tile, dtype),
                        below, dtype, tile)
            sources.append(file_source(opened.enter_context(open_tiled(path)), tile))

        def write(tmp: str) -> None:
            with tifffile.TiffWriter(tmp, bigtiff=True) as tiff:
                for k, level in enumerate(shapes):
                    extra = {"subfiletype": 1} if k else {"subifds": len(shapes) - 1 or None}
                    tiff.write(full_tiles(sources[k], level, tile, dtype), shape=level, dtype=dtype,
                               tile=(tile, tile), **FORMAT, **extra)
        atomic_write(out, write)
    return shapes
