"""`medconv predict` through a run's ONNX export (`medconv export`), with numpy and onnxruntime only: image files
already at the size the run's images came at are read as training read them (data.images: window, bit depth,
channels) and classified without importing torch (about 2 s by itself). What needs torch to repeat training's
reading goes to classify.predict: files of another size or a run with --resize (torchvision's resampling), a 3D
network (volumes are resampled), --level, a GPU, or a run without a current export."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from ..data.images import kept_8_bit, read_frame, to_channels, to_unit
from ..data.readers import ImageMeta, image_header
from ..data.summary import ReadLog
from ..errors import UserError
from ..fileio import image_files, write_csv
from ..infer.onnx_maps import SIDECAR_NAME, current_export, onnx_session, read_sidecar, softmax
from ..infer.shards import everyone, gather_in_order, my_share
from ..metrics import MULTI_LABEL
from ..progress import make_console
from ..training.runstate import check_finished
from .rows import prediction_rows

BATCH = 512  # images a forward pass, as classify.predict.predict_scores


def read_as_trained(path: Path, window, channels: int) -> tuple[np.ndarray, ImageMeta, str]:
    """An image file at the run's size -> float32 (channels, H, W) in [0, 1], as data.reading.read_one makes
    it (files of 8 bits or fewer rounded to k / 255, the uint8 it keeps), its metadata and how values were
    scaled (data.images.to_unit)."""
    a, meta = read_frame(path)
    unit, how = to_unit(a, meta, window)
    x = np.clip(to_channels(unit, channels), 0.0, 1.0)
    if kept_8_bit(meta, how):
        x = np.round(x * np.float32(255)).astype(np.uint8).astype(np.float32) / np.float32(255)
    return x, meta, how


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file: from its header, else read."""
    header = image_header(path)
    return tuple(header[:2]) if header else tuple(read_frame(path)[0].shape[:2])


def tta_views(x: np.ndarray, mode: str) -> list[np.ndarray]:
    """Views of x (N, C, H, W) as data.transforms.tta_views makes them: none, flip (+ h-flip), d4 (8 dihedral)."""
    if mode in ("none", "", None):
        return [x]
    if mode == "flip":
        return [x, x[..., ::-1]]
    if mode == "d4":
        return [r[..., ::-1] if f else r for k in range(4) for r in [np.rot90(x, k, (-2, -1))] for f in (0, 1)]
    raise ValueError(f"unknown test-time augmentation '{mode}': expected none, flip or d4")


def exported_scores(session, images: np.ndarray, meta: dict, tta: str) -> np.ndarray:
    """Probabilities (N, K) of images (N, C, H, W) (or volumes (N, C, D, H, W)) float32 in [0, 1]: normalised
    as in training, the mean over the tta views of the softmax (sigmoid per label for multi-label tasks) of the
    exported logits."""
    shape = (1, -1) + (1,) * (images.ndim - 2)
    mean, std = np.asarray(meta["mean"], np.float32).reshape(shape), np.asarray(meta["std"], np.float32).reshape(shape)
    x, out = (images - mean) / std, []
    for start in range(0, len(x), BATCH):
        views = []
        for view in tta_views(x[start:start + BATCH], tta):
            logits = session.run(None, {"image": np.ascontiguousarray(view, np.float32)})[0]
            views.append(np.exp(-np.logaddexp(0, -logits)) if meta["task"] == MULTI_LABEL else softmax(logits))
        out.append(np.mean(views, 0, dtype=np.float32))
    return np.concatenate(out)


def unusable(meta: dict, which: str, level: str | None, files: list[Path]) -> str | None:
    """Why the export cannot classify these files as classify.predict would (None: it can)."""
    if meta["checkpoint"] != f"checkpoints/{which}.safetensors":
        return f"the export was made from {meta['checkpoint']}, not the {which} checkpoint"
    if "reading" not in meta:
        return "the network takes volumes (read and resampled with torch)" if len(meta.get("input_size", ())) == 3 \
            else "the export does not say how the run reads images: export it again"
    if level:
        return "--level sums the run's taxonomy with torch"
    size, resize = tuple(meta["reading"]["size"]), meta["reading"]["resize"]
    if resize and not resize == size[0] == size[1]:
        return f"the run resizes its images to {resize} px (--resize, by torchvision)"
    other = sum(image_size(f) != size for f in files)
    if other:
        return (f"{other} of {len(files)} images are not {size[0]}x{size[1]}, the size the run's images came at "
                "(torchvision brings them to it)")
    return None


def predict_exported(run_dir: str | Path, inputs: list[str], out: str | Path | None = None, which: str = "best",
                     tta: str | None = None, device: str = "auto", level: str | None = None,
                     allow_unfinished: bool = False, console: Console | None = None, chunk: int = 256
                     ) -> list[dict] | None:
    """Rows {path, prob_<class>..., predicted} as classify.predict.predict_files makes them, by the run's current
    ONNX export (RUN/model.onnx of a classifier) on the CPU, CSV at `out` when given; None when torch must make
    them (device other than auto or cpu, no current export, or `unusable`: a note on `console` says why; every
    file is looked at, so all ranks of a torchrun launch choose alike). Files are read `chunk` at a time; under
    torchrun each rank classifies its share of them (infer.shards) and every rank returns all rows, in order."""
    onnx = current_export(run_dir, ("classifier",)) if device in ("auto", "cpu") else None
    if onnx is None:
        return None
    console = console or make_console()
    meta = read_sidecar(onnx.parent / SIDECAR_NAME)
    files = image_files(inputs)
    reason = unusable(meta, which, level, files)
    if reason:
        console.print(f"note: {reason}: torch predicts, not the ONNX export {onnx}", highlight=False, soft_wrap=True)
        return None
    check_finished(run_dir, allow_unfinished, which)
    reading, session, parts, found = meta["reading"], onnx_session(onnx), [], ReadLog()
    size, mine, failure, stop = tuple(reading["size"]), my_share(files), None, 0  # under torchrun: this rank's
    try:
        for start in range(0, len(mine), chunk):
            batch = []
            for stop, path in enumerate(mine[start:start + chunk], start):
                x, image_meta, how = read_as_trained(path, reading["window"], meta["in_channels"])
                if x.shape[1:] != size:  # the header said otherwise
                    raise UserError(f"{path}: {x.shape[1]}x{x.shape[2]} pixels, though its header says "
                                    f"{size[0]}x{size[1]}")
                found.add(image_meta, how)
                batch.append(x)
            parts.append(exported_scores(session, np.stack(batch), meta, tta or reading["tta"]))
    except UserError as exc:  # under torchrun: raised on every rank once all are here (infer.shards)
        failure = exc
    scores = np.concatenate(parts) if parts else np.zeros((0, len(meta["classes"])), np.float32)
    rows = gather_in_order(prediction_rows(mine, scores, meta["classes"], meta["task"]), failure, stop)
    logs, found = everyone(found), ReadLog()  # every rank's reading, so the notes count all files
    for log in logs:
        found.merge(log)
    for line in found.changes(size, reading["fit_mode"]):
        console.print(f"note: {line}", highlight=False, soft_wrap=True)
    if out is not None:
        write_csv(out, rows)  # by rank 0 (fileio.writes_here)
    console.print(f"{len(rows)} images classified by {onnx} (onnxruntime)", highlight=False, soft_wrap=True)
    return rows
