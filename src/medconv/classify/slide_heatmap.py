"""`medconv predict --slide-level L`: a class heat map of a whole-slide image from a patch classifier (a run of
`medconv train`, e.g. a CNN on CRCHistoPhenotypes' 27 px nucleus patches), tile by tile over the tissue, in bounded
memory.

The classifier sees the window of its input size (P x P at level L, the size its training images came at) centred
on every point of a grid of spacing `stride` (default P: windows side by side): cell (i, j) of the map holds the
class probabilities of the window centred at the level's pixel (x, y) = (j * stride + stride // 2,
i * stride + stride // 2), for every cell whose centre lies in the level. The level is read in tiles (a multiple of
the stride, so every cell lies in one tile) with a halo of P // 2 (infer.slides.halo_image): a window at a tile's
border sees its real neighbours, and one passing the slide's edge sees the slide mirrored there, as training cut
its patches (data.nuclei.extract_patches). So the map equals, cell for cell, classifying the windows cut from the
whole level image. In memory at once: a tile, a batch of windows, and the map (1/stride of the level's side).

Glass: only the cells whose centre is tissue by the slide's tissue mask (data.slides.tissue_mask) are classified,
and only the tiles holding such cells are read. Glass cells are invalid and hold probability 0: NAME_heatmap.tif
has K + 1 float32 channels, the K class probabilities then "tissue", 1 where a cell was classified and 0 on glass.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import tifffile
import torch
from torch import nn

from ..data.levels import at_level
from ..data.slides import TISSUE_SIDE, Slide, Tile, open_slide, tissue_mask
from ..errors import UserError
from ..fileio import atomic_write
from ..infer.slides import halo_image, tile_origins, tile_stats
from ..progress import make_console, progress_bar
from ..report.heatmaps import ALPHA
from ..report.plots import plt, save_figure
from ..training.checkpoint import checkpoint_path, load_model, read_checkpoint
from ..training.engine import resolve_device
from ..training.runstate import check_finished
from .predict import class_number, data_size, predict_scores, resized_as_trained

BATCH = 256  # windows per forward pass


def grid_shape(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """(rows, cols) of the map of a level of `size` (width, height): the cells whose centre lies in the level."""
    width, height = size
    return (height - stride // 2 + stride - 1) // stride, (width - stride // 2 + stride - 1) // stride


def cell_centres(count: int, stride: int) -> np.ndarray:
    """The level's pixel (row or column) each of `count` cells is centred on."""
    return np.arange(count) * stride + stride // 2


def tissue_cells(slide: Slide, level: int, stride: int, shape: tuple[int, int],
                 mask: tuple[np.ndarray, int]) -> np.ndarray:
    """(rows, cols) bool: the cells of the map whose centre pixel is tissue by `mask` (tissue_mask's (mask, its
    level))."""
    tissue, mask_level = mask
    scale = slide.downsamples[level] / slide.downsamples[mask_level]  # mask pixels per level pixel
    rows = np.minimum(((cell_centres(shape[0], stride) + 0.5) * scale).astype(int), tissue.shape[0] - 1)
    cols = np.minimum(((cell_centres(shape[1], stride) + 0.5) * scale).astype(int), tissue.shape[1] - 1)
    return tissue[np.ix_(rows, cols)]


def check_classifier(meta: dict, run_dir: str | Path) -> None:
    """Refuse, in one line, a run whose network is not a 2D image classifier."""
    task, size = meta.get("task"), meta.get("input_size") or []
    if task == "segmentation" or "mean" not in meta or len(size) != 2:
        what = ("a segmentation or detection run" if task == "segmentation" or "mean" not in meta else
                f"a {len(size)}D classifier")
        raise UserError(f"--slide-level: {run_dir} is {what}; slide heat maps need a 2D classifier (a run of medconv "
                        "train on images, e.g. --dataset crchistophenotypes)")


def check_heatmap(slide: Slide, level: int, tile: int, stride: int, window: tuple[int, int]) -> None:
    """Refuse, in one line each: a level the slide lacks, a stride below 1, a tile smaller than the window, and a
    level smaller than the window or without a grid point."""
    try:
        slide.check_level(level)
    except UserError as exc:  # "--level L: ... has levels 0-N (...)"; here --level is the taxonomy's
        raise UserError(f"--slide-{str(exc).removeprefix('--')}") from None
    if stride < 1:
        raise UserError(f"--stride {stride}: expected a whole number >= 1 (pixels of the level between windows)")
    side = max(window)
    if tile < side:
        raise UserError(f"--slide-tile {tile} is smaller than the classifier's {window[0]}x{window[1]} window; use at "
                        f"least {side}")
    width, height = slide.sizes[level]
    if width < side or height < side:
        raise UserError(f"--slide-level {level}: the level ({width}x{height}) is smaller than the classifier's "
                        f"{window[0]}x{window[1]} window; use a finer level")
    if 0 in grid_shape((width, height), stride):
        raise UserError(f"--stride {stride}: no window centre falls in level {level} ({width}x{height}); use a "
                        f"stride of at most {min(width, height)}")


def window_classifier(model: nn.Module, meta: dict, device: str = "cpu", tta: str = "none",
                      level: str | None = None) -> tuple[Callable[[torch.Tensor], np.ndarray], list[str]]:
    """(classify, classes): classify(windows (N, C, h, w) float in [0, 1] at the run's data size) -> (N, K)
    probabilities as `medconv predict` gives them for image files (resized as the run's --resize did, normalised,
    test-time augmented; summed up to `level` of the run's --taxonomy)."""
    classes = at_level(meta, level, np.zeros((0, len(meta["classes"]))))[2] if level else list(meta["classes"])

    def classify(windows: torch.Tensor) -> np.ndarray:
        scores = predict_scores(model, resized_as_trained(windows, meta), meta["mean"], meta["std"], meta["task"],
                                device, batch_size=max(1, len(windows)), tta=tta)
        return at_level(meta, level, scores)[0] if level else scores
    return classify, classes


class WindowBatch:
    """Windows gathered across tiles into batches of `size` for the device, each batch's probabilities written into
    `heat` (K, rows, cols) at its windows' cells: at most one batch of windows is held at a time."""

    def __init__(self, heat: np.ndarray, classify: Callable[[torch.Tensor], np.ndarray], size: int = BATCH):
        self.heat, self.classify, self.size = heat, classify, size
        self.windows: list[torch.Tensor] = []
        self.cells: list[tuple[np.ndarray, np.ndarray]] = []
        self.held = self.done = 0

    def add(self, views: torch.Tensor, rows: np.ndarray, cols: np.ndarray, row0: int = 0, col0: int = 0) -> None:
        """The windows views[rows, cols] (views: (R, C', channels, h, w), a tile's windows by cell) of the cells
        (row0 + rows, col0 + cols) of the map."""
        start = 0
        while start < len(rows):  # a tile's windows fill the batch held, then the next ones
            take = min(self.size - self.held, len(rows) - start)
            r, c = rows[start:start + take], cols[start:start + take]
            self.windows.append(views[torch.from_numpy(r), torch.from_numpy(c)])  # a copy of these windows only
            self.cells.append((row0 + r, col0 + c))
            self.held, start = self.held + take, start + take
            if self.held == self.size:
                self.flush()

    def flush(self) -> None:
        """Classify the windows held, if any."""
        if not self.held:
            return
        scores = np.asarray(self.classify(torch.cat(self.windows)), np.float32)
        rows, cols = (np.concatenate(part) for part in zip(*self.cells))
        self.heat[:, rows, cols] = scores.T
        self.done += self.held
        self.windows, self.cells, self.held = [], [], 0


@torch.no_grad()
def slide_heatmap(slide: Slide, level: int, classify: Callable[[torch.Tensor], np.ndarray], classes: int,
                  window: tuple[int, int], stride: int | None = None, tile: int = 512, channels: int = 3,
                  batch_size: int = BATCH, mask: tuple[np.ndarray, int] | None = None) -> tuple[np.ndarray,
                                                                                              np.ndarray, dict]:
    """(heat (classes, rows, cols) float32, valid (rows, cols) bool, figures) over `level` of `slide`: heat[:, i, j]
    = classify() of the `window` (h, w) centred at pixel (j * stride + stride // 2, i * stride + stride // 2) of the
    level, for the cells whose centre is tissue by `mask` (default: tissue_mask(slide)); glass cells invalid and 0.
    The level is read in tiles of `tile` px rounded to a multiple of the stride (at least one), with a halo of
    half the window; windows go to `classify` `batch_size` at a time. Figures: tiles, tissue_tiles, seconds,
    tiles_per_second, windows, grid [rows, cols], stride, tile (the side used), window."""
    stride = max(window) if stride is None else stride
    check_heatmap(slide, level, tile, stride, window)
    size, side, halo = slide.sizes[level], stride * max(1, round(tile / stride)), max(window) // 2
    rows, cols = grid_shape(size, stride)
    valid = tissue_cells(slide, level, stride, (rows, cols), mask if mask is not None else tissue_mask(slide))
    heat = np.zeros((classes, rows, cols), np.float32)
    per_tile = side // stride  # cells along a tile's side; tiles are blocks of cells, none without one
    tiles = [Tile(j * stride, i * stride, min(side, size[0] - j * stride), min(side, size[1] - i * stride), halo)
             for j, i in tile_origins((cols, rows), per_tile)]
    todo = [t for t in tiles if valid[t.y // stride:t.y // stride + per_tile, t.x // stride:t.x // stride + per_tile]
            .any()]
    started, batch = time.time(), WindowBatch(heat, classify, batch_size)
    start_row, start_col = stride // 2 - window[0] // 2 + halo, stride // 2 - window[1] // 2 + halo  # in a tile
    with progress_bar(make_console(), disable=len(todo) < 2) as bar:
        task = bar.add_task("slide tiles", total=len(todo), status="")
        for t in todo:
            i0, j0 = t.y // stride, t.x // stride
            found_rows, found_cols = np.nonzero(valid[i0:i0 + per_tile, j0:j0 + per_tile])
            image = torch.from_numpy(halo_image(slide, level, t, channels))[:, start_row:, start_col:]
            views = image.unfold(1, window[0], stride).unfold(2, window[1], stride).permute(1, 2, 0, 3, 4)  # no copy
            batch.add(views, found_rows, found_cols, i0, j0)
            bar.advance(task)
        batch.flush()
    return heat, valid, {**tile_stats(len(tiles), len(todo), started), "windows": batch.done, "grid": [rows, cols],
                         "stride": stride, "tile": side, "window": list(window)}


def write_heatmap(path: str | Path, heat: np.ndarray, valid: np.ndarray, classes: list[str], info: dict) -> Path:
    """NAME_heatmap.tif: float32 (K + 1, rows, cols), the class probabilities then the "tissue" channel (1 where a
    cell was classified, 0 on glass); `info` (level, stride, window, ...) in its JSON description."""
    data = np.concatenate([heat, valid[None].astype(np.float32)])
    metadata = {"axes": "CYX", "channels": [*classes, "tissue"], **info}
    atomic_write(path, lambda tmp: tifffile.imwrite(tmp, data, photometric="minisblack", compression="zlib",
                                                    metadata=metadata))
    return Path(path)


def draw_heatmap(path: str | Path, slide: Slide, level: int, heat: np.ndarray, valid: np.ndarray, stride: int,
                 title: str, label: str) -> Path:
    """A PNG of one class's map (rows, cols) drawn over the slide's thumbnail (its first level of at most
    TISSUE_SIDE px, or `level` when coarser), glass left clear, with a colour bar labelled `label`."""
    width, height = slide.sizes[level]
    thumb = max(level, next((k for k, (w, h) in enumerate(slide.sizes) if max(w, h) <= TISSUE_SIDE),
                            slide.levels - 1))
    image = slide.read(thumb, 0, 0, *slide.sizes[thumb])
    fig, ax = plt.subplots(figsize=(9, float(np.clip(8 * height / width, 3, 12))))
    ax.imshow(image, extent=(0, width, height, 0), interpolation="bilinear")
    rows, cols = heat.shape
    shown = ax.imshow(np.ma.masked_array(heat, ~valid), cmap="jet", vmin=0, vmax=1, alpha=ALPHA,
                      extent=(0, cols * stride, rows * stride, 0), interpolation="nearest")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    solid = plt.cm.ScalarMappable(norm=shown.norm, cmap=shown.cmap)  # the colour bar without the map's alpha
    fig.colorbar(solid, ax=ax, fraction=0.046, pad=0.02, label=label)
    save_figure(fig, path)
    return Path(path)


def predict_slide_heatmap(run_dir: str | Path, path: str | Path, out_dir: str | Path, level: int, tile: int = 512,
                          stride: int | None = None, target: str | int | None = None, which: str = "best",
                          tta: str | None = None, device: str = "auto", taxonomy_level: str | None = None,
                          allow_unfinished: bool = False, batch_size: int = BATCH) -> dict:
    """OUT/NAME_heatmap.tif (write_heatmap) and OUT/NAME_heatmap.png (the map of class `target`, by index or
    name, default the last, over the slide's thumbnail) for the slide at `path` and the classifier of `run_dir`
    (slide_heatmap). `tta` None: as the run was trained to evaluate. Returns slide_heatmap's figures with
    "files" and "class"."""
    check_finished(run_dir, allow_unfinished, which)
    _, meta = read_checkpoint(checkpoint_path(run_dir, which), tensors=False)  # the header: refused before weights
    check_classifier(meta, run_dir)
    window = data_size(meta)
    stride = max(window) if stride is None else stride
    device = str(resolve_device(device))
    slide = open_slide(path)
    try:
        check_heatmap(slide, level, tile, stride, window)
        model, meta = load_model(run_dir, which, device)
        classify, classes = window_classifier(model, meta, device, tta or meta["config"].get("tta", "none"),
                                              taxonomy_level)
        chosen = class_number(target, classes)
        chosen = len(classes) - 1 if chosen is None else chosen
        heat, valid, stats = slide_heatmap(slide, level, classify, len(classes), window, stride, tile,
                                           meta["in_channels"], batch_size)
        name = Path(path).stem
        info = {"slide": Path(path).name, "level": level, "stride": stride, "window": list(window),
                "downsample": slide.downsamples[level], "run": str(run_dir)}
        tif = write_heatmap(Path(out_dir) / f"{name}_heatmap.tif", heat, valid, classes, info)
        png = draw_heatmap(Path(out_dir) / f"{name}_heatmap.png", slide, level, heat[chosen], valid, stride,
                           f"{Path(path).name}, level {level}: {classes[chosen]} ({window[0]}x{window[1]} windows "
                           f"every {stride} px)", f"P({classes[chosen]})")
    finally:
        slide.close()
    return {**stats, "files": [str(tif), str(png)], "class": classes[chosen]}
