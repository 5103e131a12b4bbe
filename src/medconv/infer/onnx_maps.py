"""Posterior maps from a dense network exported to ONNX by `medconv export`, with numpy and onnxruntime
only: importing torch alone takes about 2 s, more than `detect predict` on one image may take.

An export is RUN/model.onnx beside RUN/model.json (the normalisation, channels and classes, and the
checkpoint file it was made from, by size and modification time, so a stale export is noticed).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import UserError
from .views import unet_padding, views_mean

ONNX_NAME, SIDECAR_NAME = "model.onnx", "model.json"


def checkpoint_stamp(path: str | Path) -> dict:
    """What identifies a checkpoint file's contents cheaply: its size and modification time."""
    stat = os.stat(path)
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def read_sidecar(path: Path) -> dict:
    """RUN/model.json, the export's description; a broken one is one clear line (export again)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        for key, kind in (("checkpoint", str), ("stamp", dict), ("in_channels", int), ("mean", list), ("std", list)):
            if not isinstance(meta.get(key), kind):
                raise ValueError(f"no valid {key!r}")
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{path} is not a readable export description ({' '.join(str(exc).split())[:120]}): run "
                        f"medconv export {path.parent} again, or delete {path.name} and {ONNX_NAME}") from None
    return meta


def current_export(run_dir: str | Path) -> Path | None:
    """RUN/model.onnx when it was exported from the checkpoint now in the run, else None."""
    onnx, sidecar = Path(run_dir) / ONNX_NAME, Path(run_dir) / SIDECAR_NAME
    if not (onnx.exists() and sidecar.exists()):
        return None
    meta = read_sidecar(sidecar)
    checkpoint = Path(run_dir) / meta["checkpoint"]
    return onnx if checkpoint.exists() and checkpoint_stamp(checkpoint) == meta["stamp"] else None


class OnnxMaps:
    """Images (C, H, W) float32 in [0, 1] -> posteriors (K, H, W): the whole image in one pass, mirrored
    out to a multiple of 16 pixels and cropped back, averaged over the `tta` views (none, flip, d4)."""

    def __init__(self, onnx_path: str | Path, tta: str = "none", threads: int | None = None):
        import onnxruntime as ort

        self.meta = read_sidecar(Path(onnx_path).parent / SIDECAR_NAME)
        self.tta, self.in_channels = tta, self.meta["in_channels"]
        self.mean = np.asarray(self.meta["mean"], np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(self.meta["std"], np.float32).reshape(-1, 1, 1)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception classes (InvalidProtobuf, Fail, ...)
            detail = " ".join(str(exc).split())[:160]
            raise UserError(f"{onnx_path} is not a readable ONNX model ({detail}): run medconv export "
                            f"{Path(onnx_path).parent} again, or delete it") from None

    def one_view(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[0] != self.in_channels:
            raise UserError(f"the exported network takes ({self.in_channels}, H, W) images, got {image.shape}")
        height, width = image.shape[1:]
        rows, cols, mode = unet_padding(height, width)
        x = np.pad((image - self.mean) / self.std, ((0, 0), (0, rows), (0, cols)), mode=mode)[None].astype(np.float32)
        logits = self.session.run(None, {"image": x})[0][0, :, :height, :width]
        e = np.exp(logits - logits.max(0, keepdims=True))
        return e / e.sum(0, keepdims=True)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return views_mean(np.asarray(image, np.float32), self.one_view, self.tta, lambda a, dims: np.flip(a, dims),
                          lambda a, k: np.ascontiguousarray(np.rot90(a, k, (-2, -1))))
