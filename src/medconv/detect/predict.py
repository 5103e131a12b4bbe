"""`medconv detect predict`: detections of image files with a trained detector. Torch is imported only
when needed: a run exported by `medconv export` is run through onnxruntime on the CPU instead."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.images import read_image, to_channels
from ..errors import UserError
from ..fileio import image_files, own_files, write_csv
from ..infer.onnx_maps import OnnxMaps, current_export
from ..infer.shards import flattened, gather_in_order, local_device, my_share
from ..infer.tiles import default_tile_batch
from ..progress import make_console, other_rank, progress_bar
from ..training.runstate import check_finished
from .overlays import FOUND, draw_marks, overlay_folder
from .peaks import CSV_FIELDS, detect, peaks_to_csv_rows, read_params
from .slides import predict_slides

VIEWS = {"none": 1, "flip": 4, "d4": 8}  # the maps a test-time augmentation costs per image (infer.views)


def map_function(run_dir: str | Path, tta: str, device: str = "auto") -> tuple[Callable, int, str]:
    """(images (N, C, H, W) float32 in [0, 1] -> posteriors (N, K, H, W) numpy, input channels, engine): with
    device auto or cpu the run's current ONNX export on the CPU ("onnxruntime", one image at a time), else its
    checkpoint ("torch") on the device (auto: cuda if available, else cpu)."""
    exported = current_export(run_dir) if device in ("auto", "cpu") else None
    if exported is not None:
        maps = OnnxMaps(exported, tta)
        return maps.batch, maps.in_channels, "onnxruntime"
    from .pipeline import detection_maps  # torch
    meta, maker = detection_maps(run_dir, {}, torch_device(device), tta)
    return maker.arrays, meta["in_channels"], "torch"


def torch_device(device: str) -> str:
    """auto, cpu, cuda or cuda:N as torch names it (auto: cuda if available, else cpu; under torchrun cuda is the
    rank's GPU); imports torch."""
    from ..training.engine import resolve_device  # torch: only once the ONNX export is ruled out
    return local_device(str(resolve_device(device)))


def type_function(classifier: str | Path | None, device: str) -> Callable | None:
    """(image (C, H, W), detections (N, 3)) -> their N class names by a nucleus-type `classifier` run on
    `device`; None without one."""
    if not classifier:
        return None
    from .pipeline import classify_detections  # torch: typing the detections needs it
    where = torch_device(device)
    return lambda image, found: classify_detections(classifier, image, found, where)


def tta_note(params: dict) -> str | None:
    """The line saying that the run chose a test-time augmentation on validation (RUN/detect.json) that this
    prediction, without --tta, leaves out: its score there (vs none when recorded) and its cost; None when the
    run chose none."""
    chosen, scores = params.get("tta", "none"), params.get("tta_f1")
    if chosen == "none" or chosen not in VIEWS:
        return None
    if isinstance(scores, dict) and all(isinstance(scores.get(t), (int, float)) for t in (chosen, "none")):
        score = f"validation F1 {scores[chosen]:.4f} vs {scores['none']:.4f} with none"
    elif isinstance(params.get("val_f1"), (int, float)):
        score = f"validation F1 {params['val_f1']:.4f}; the score with none was not recorded"
    else:
        score = "its validation score was not recorded"
    return (f"note: the run chose test-time augmentation {chosen} on validation ({score}); this prediction uses "
            f"none, the default: --tta {chosen} applies it at about {VIEWS[chosen]}x the time")


def write_overlays(found: list[tuple[Path, np.ndarray]], folder: Path) -> None:
    """FOLDER/IMAGE.png for each (image path, its detections (N, 3) (row, col, score)): the image with a circle
    around each detection."""
    for path, peaks in found:
        draw_marks(to_channels(read_image(path), 3), [(p, FOUND) for p in peaks[:, :2]], folder / f"{path.stem}.png")


def detect_file(path: Path, maps: Callable, channels: int, params: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """(the image file as the network reads it (channels, H, W), its detections (N, 3) (row, col, score), the
    seconds its map and peak search took)."""
    array = read_image(path)
    tic = time.perf_counter()
    image = to_channels(array, channels)
    found = detect(maps(image[None])[0, 1], params)
    return image, found, time.perf_counter() - tic


def predict_detections(run_dir: str | Path, inputs: list[str], out: str | Path | None = None,
                       device: str = "auto", classifier: str | Path | None = None,
                       nms_radius: float | None = None, tta: str | None = None, log: Callable | None = None,
                       allow_unfinished: bool = False, overlays: bool = True, slide_level: int | None = None,
                       slide_tile: int = 512, halo: int | None = None, tile_batch: int | None = None) -> list[dict]:
    """Detections of image files as rows {image, x, y, score[, class], seconds} (1-based x = column,
    y = row, as the annotations), typed by a nucleus-type `classifier` run when given, after non-maximum
    suppression within `nms_radius` px when given; CSV at `out` when given, and with `overlays` each image with
    its detections circled in the folder beside it (overlay_folder: detections.csv -> detections_overlays/). Both
    are written once every image is done. `seconds`: each image's map and peak search. `device`: auto (cuda if
    available, else cpu; a current ONNX export runs with onnxruntime), cpu, cuda or cuda:N. `tta`: test-time
    augmentation (None: none, with a line when the run chose another on validation). A run that has not
    finished training is refused unless `allow_unfinished`. `slide_level`: the inputs are whole slides, detected
    at that level tile by tile over the tissue (detect.slides; x, y in level-0 pixels; no overlays), up to
    `tile_batch` tiles of one shape at a time (None: infer.tiles.default_tile_batch of the device; an ONNX export
    maps one at a time whatever the number). Under torchrun each rank detects on its share of the images or slides
    and draws their overlays (infer.shards); rank 0 writes the CSV and logs (by default), and every rank returns
    all rows, in input order."""
    log = log or ((lambda line: None) if other_rank() else (lambda line: print(line, file=sys.stderr)))
    check_finished(run_dir, allow_unfinished)
    params = read_params(run_dir)
    note = tta_note(params) if tta is None else None
    if note:
        log(note)
    tta = tta or "none"
    maps, channels, engine = map_function(run_dir, tta, device)
    mine, failure = [], None  # under torchrun: per input of this rank's share, its rows
    if slide_level is not None:
        # an ONNX export maps one tile at a time (its batch axis is 1), whatever was asked
        batch = (tile_batch or default_tile_batch(torch_device(device))) if engine == "torch" else 1
        try:
            for path in my_share(inputs):
                mine.append(predict_slides(run_dir, [path], slide_level, slide_tile, halo, maps, channels,
                                           {**params, "nms_radius": nms_radius}, log, batch))
        except UserError as exc:
            failure = exc
        rows = flattened(gather_in_order(mine, failure))
        if out is not None:
            write_csv(out, rows, list(CSV_FIELDS))  # by rank 0 (fileio.writes_here)
        return rows
    typing = type_function(classifier, device)
    paths, found_all = my_share(image_files(inputs)), []
    try:
        with progress_bar(make_console(), disable=len(paths) < 2) as bar:
            task = bar.add_task("detecting", total=len(paths), status="")
            for path in paths:
                image, found, seconds = detect_file(path, maps, channels, {**params, "nms_radius": nms_radius})
                found_rows = peaks_to_csv_rows(path.name, found)
                for row, kind in zip(found_rows, typing(image, found) if typing else []):
                    row["class"] = kind
                mine.append([{**row, "seconds": round(seconds, 3)} for row in found_rows])
                found_all.append((path, found))
                log(f"{path.name}: {len(found)} detections in {seconds:.2f} s ({engine})"
                    + (f", test-time augmentation {tta}" if tta != "none" else ""))
                bar.advance(task)
    except UserError as exc:
        failure = exc
    rows = flattened(gather_in_order(mine, failure))
    if out is not None:  # no detections at all: the header alone, never an older file left in place
        write_csv(out, rows, [*CSV_FIELDS, *(["class"] if classifier else []), "seconds"])  # by rank 0
        if overlays:
            with own_files():  # each rank draws the images it detected on
                write_overlays(found_all, overlay_folder(out))
            log(f"overlays: {overlay_folder(out)}/ (the detections circled, a PNG per image)")
    return rows
