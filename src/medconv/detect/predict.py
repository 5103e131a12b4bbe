"""`medconv detect predict`: detections of image files with a trained detector. Torch is imported only
when needed: a run exported by `medconv export` is run through onnxruntime on the CPU instead."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from ..data.images import read_image, to_channels
from ..fileio import image_files, write_csv
from ..infer.onnx_maps import OnnxMaps, current_export
from ..training.runstate import check_finished
from .peaks import CSV_FIELDS, detect, peaks_to_csv_rows, read_params


def map_function(run_dir: str | Path, tta: str, device: str = "cpu") -> tuple[Callable, int, str]:
    """(image (C, H, W) float32 in [0, 1] -> posteriors (K, H, W) numpy, input channels, engine): the run's
    current ONNX export on the CPU ("onnxruntime"), else its checkpoint ("torch")."""
    exported = current_export(run_dir) if device == "cpu" else None
    if exported is not None:
        maps = OnnxMaps(exported, tta)
        return maps, maps.in_channels, "onnxruntime"
    import torch

    from .pipeline import detection_maps
    meta, maker = detection_maps(run_dir, {}, device, tta)
    return (lambda image: maker(torch.from_numpy(image)).numpy()), meta["in_channels"], "torch"


def predict_detections(run_dir: str | Path, inputs: list[str], out: str | Path | None = None,
                       device: str = "cpu", classifier: str | Path | None = None,
                       nms_radius: float | None = None, tta: str | None = None, log: Callable | None = None,
                       allow_unfinished: bool = False) -> list[dict]:
    """Detections of image files as rows {image, x, y, score[, class], seconds} (1-based x = column,
    y = row, as the annotations), typed by a nucleus-type `classifier` run when given, after non-maximum
    suppression within `nms_radius` px when given; CSV at `out` when given. `seconds`: each image's map and
    peak search. `tta`: test-time augmentation instead of the one chosen in training (none is fastest). A run
    that has not finished training is refused unless `allow_unfinished`."""
    log = log or (lambda line: print(line, file=sys.stderr))
    check_finished(run_dir, allow_unfinished)
    params = read_params(run_dir)
    maps, channels, engine = map_function(run_dir, tta or params.get("tta", "none"), device)
    rows = []
    for path in image_files(inputs):
        array = read_image(path)
        tic = time.perf_counter()
        image = to_channels(array, channels)
        found = detect(maps(image)[1], {**params, "nms_radius": nms_radius})
        seconds = time.perf_counter() - tic
        found_rows = peaks_to_csv_rows(path.name, found)
        if classifier:
            from .pipeline import classify_detections
            for row, kind in zip(found_rows, classify_detections(classifier, image, found, device)):
                row["class"] = kind
        rows += [{**row, "seconds": round(seconds, 3)} for row in found_rows]
        log(f"{path.name}: {len(found)} detections in {seconds:.2f} s ({engine})")
    if out is not None:  # no detections at all: the header alone, never an older file left in place
        write_csv(out, rows, [*CSV_FIELDS, *(["class"] if classifier else []), "seconds"])
    return rows
