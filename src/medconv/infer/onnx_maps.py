"""Posterior maps from a dense network exported to ONNX by `medconv export` (a U-Net, or a patch classifier's
dense-scanning form), with numpy and onnxruntime only: importing torch alone takes about 2 s, more than
`detect predict` on one image may take.

An ONNX export is RUN/model.onnx beside RUN/model.json (its kind, the normalisation, channels and classes, and
the checkpoint file it was made from, by size and modification time, so a stale export is noticed).
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


def export_kind(meta: dict) -> str:
    """What an export description says was exported: classifier, patch, dense or dense3d (exports made before
    the kind was recorded were dense 2D networks)."""
    return meta.get("kind", "dense")


def current_export(run_dir: str | Path, kinds: tuple[str, ...] = ("dense", "patch")) -> Path | None:
    """RUN/model.onnx when its kind is one of `kinds` (default: the 2D maps detect predict runs) and it was
    exported from the checkpoint now in the run, else None."""
    onnx, sidecar = Path(run_dir) / ONNX_NAME, Path(run_dir) / SIDECAR_NAME
    if not (onnx.exists() and sidecar.exists()):
        return None
    meta = read_sidecar(sidecar)
    if export_kind(meta) not in kinds:
        return None
    checkpoint = Path(run_dir) / meta["checkpoint"]
    return onnx if checkpoint.exists() and checkpoint_stamp(checkpoint) == meta["stamp"] else None


def onnx_session(onnx_path: str | Path, threads: int | None = None):
    """An onnxruntime session on the CPU; an unreadable file is one clear line (export again)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception classes (InvalidProtobuf, Fail, ...)
        detail = " ".join(str(exc).split())[:160]
        raise UserError(f"{onnx_path} is not a readable ONNX model ({detail}): run medconv export "
                        f"{Path(onnx_path).parent} again, or delete it") from None


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """Softmax of logits along `axis` (the classes), float32."""
    e = np.exp(logits - logits.max(axis, keepdims=True))
    return (e / e.sum(axis, keepdims=True)).astype(np.float32)


class OnnxMaps:
    """Images (C, H, W) float32 in [0, 1] -> posteriors (K, H, W): the whole image in one pass, averaged over
    the `tta` views (none, flip, d4). A U-Net's image is mirrored out to a multiple of 16 pixels and cropped
    back; a patch classifier's dense form (kind patch) pads by patch // 2 itself."""

    def __init__(self, onnx_path: str | Path, tta: str = "none", threads: int | None = None):
        self.meta = read_sidecar(Path(onnx_path).parent / SIDECAR_NAME)
        self.tta, self.in_channels = tta, self.meta["in_channels"]
        self.patch = self.meta.get("patch") if export_kind(self.meta) == "patch" else None
        self.mean = np.asarray(self.meta["mean"], np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(self.meta["std"], np.float32).reshape(-1, 1, 1)
        self.session = onnx_session(onnx_path, threads)

    def one_view(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[0] != self.in_channels:
            raise UserError(f"the exported network takes ({self.in_channels}, H, W) images, got {image.shape}")
        height, width = image.shape[1:]
        x = (image - self.mean) / self.std
        if self.patch:  # as infer.sliding_window.padded_input refuses it
            if self.patch // 2 >= min(height, width):
                raise UserError(f"--patch {self.patch} is too large for a {height}x{width} image: mirror padding "
                                "needs patch // 2 < the image side")
        else:
            rows, cols, mode = unet_padding(height, width)
            x = np.pad(x, ((0, 0), (0, rows), (0, cols)), mode=mode)
        logits = self.session.run(None, {"image": x[None].astype(np.float32)})[0][0, :, :height, :width]
        return softmax(logits, 0)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return views_mean(np.asarray(image, np.float32), self.one_view, self.tta, lambda a, dims: np.flip(a, dims),
                          lambda a, k: np.ascontiguousarray(np.rot90(a, k, (-2, -1))))

    def batch(self, images: np.ndarray) -> np.ndarray:
        """Posteriors (N, K, H, W) of images (N, C, H, W), one image at a time: an export takes one image (its
        batch axis is 1, export.forms), so there is nothing to gain from stacking them."""
        return np.stack([self(image) for image in images])
