"""Reading one image file (PNG, JPEG, BMP, TIFF, DICOM) and bringing it to a model's input shape."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from medconv.errors import UserError

if TYPE_CHECKING:
    import torch

LUMA = (0.299, 0.587, 0.114)


def _to_unit(a: np.ndarray) -> np.ndarray:
    """Any numeric array -> float64 in [0, 1]: integers by their dtype's max, floats min-max if needed."""
    if a.dtype == bool:
        return a.astype(np.float64)
    if np.issubdtype(a.dtype, np.unsignedinteger):
        return a.astype(np.float64) / np.iinfo(a.dtype).max
    if np.issubdtype(a.dtype, np.signedinteger) and a.size and a.min() >= 0:
        return a.astype(np.float64) / np.iinfo(a.dtype).max
    a = np.nan_to_num(a.astype(np.float64))
    if a.size and (a.min() < 0 or a.max() > 1):
        return _minmax(a)
    return a


def _minmax(a: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the array's own range; a constant array is clipped to [0, 1] instead."""
    a = np.nan_to_num(a.astype(np.float64))
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.clip(a, 0.0, 1.0)


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        mode = img.mode
        if mode == "P" or mode == "PA":
            rgb = np.asarray(img.convert("RGB"))
            gray = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
            return _to_unit(rgb[..., 0] if gray else rgb)
        if mode in ("1", "LA", "La"):
            img = img.convert("L")
        elif mode.startswith("I;16"):
            return _to_unit(np.asarray(img).astype(np.uint16))
        elif mode == "I":
            a = np.asarray(img)
            if a.size and a.min() >= 0 and a.max() <= 65535:  # 16-bit PNGs may open as mode I
                a = a.astype(np.uint16)
            return _to_unit(a)
        elif mode not in ("L", "RGB", "F"):
            img = img.convert("RGB")  # RGBA, CMYK, YCbCr, ...: colour without alpha
        return _to_unit(np.asarray(img))


def max_pixels() -> int:
    """The most pixels one image may declare before it is decoded: Pillow's decompression-bomb limit
    (2 x 89,478,485), or $MEDCONV_MAX_PIXELS."""
    value = os.environ.get("MEDCONV_MAX_PIXELS", "178956970")
    try:
        return int(value)
    except ValueError:
        raise UserError(f"MEDCONV_MAX_PIXELS must be a whole number of pixels, got {value!r}") from None


def check_pixels(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse an image whose declared shape holds more than max_pixels() values, before allocating it."""
    count = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if count > max_pixels():
        raise UserError(f"cannot read image {path}: it declares {' x '.join(map(str, shape))} = {count:,} values, "
                        f"above the limit of {max_pixels():,} (a decompression bomb?); set MEDCONV_MAX_PIXELS "
                        "to raise it")


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        check_pixels(path, page.shape)
        a = page.asarray()
        axes, inverted = page.axes, page.photometric == tifffile.PHOTOMETRIC.MINISWHITE
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
            a, axes = page.colormap.T[a], axes + "S"
    if a.ndim == 3 and axes.startswith("S"):  # planar configuration: samples first
        a = np.moveaxis(a, 0, -1)
    while a.ndim > 3:
        a = a[0]
    x = _to_unit(a)
    return 1.0 - x if inverted else x


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise UserError(f"cannot read image {path}: DICOM file has no pixel data")
    check_pixels(path, (int(ds.get("NumberOfFrames", 1) or 1), int(ds.get("Rows", 0) or 0),
                        int(ds.get("Columns", 0) or 0), int(ds.get("SamplesPerPixel", 1) or 1)))
    a = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        a = a[0]
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        return _to_unit(a)  # colour: keep the hue balance, scale by the dtype
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    x = _minmax(a.astype(np.float64) * slope + intercept)
    return 1.0 - x if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1" else x


_READERS: dict[str, Callable[[Path], np.ndarray]] = {
    ".png": _read_pillow, ".jpg": _read_pillow, ".jpeg": _read_pillow, ".bmp": _read_pillow,
    ".tif": _read_tiff, ".tiff": _read_tiff, ".dcm": _read_dicom,
}
SUPPORTED_EXTENSIONS = tuple(_READERS)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def read_image(path: str | Path) -> np.ndarray:
    """Read a PNG, JPEG, BMP, TIFF or DICOM file as float32 (H, W, C) in [0, 1], C = 1 or 3.

    Alpha is dropped; integer pixels are divided by their dtype's max, floats outside [0, 1] are
    min-max scaled; DICOM gets RescaleSlope/Intercept, min-max scaling and MONOCHROME1 inversion,
    and multi-frame files give their first frame. Any failure raises a one-line UserError.
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise UserError(f"cannot read image {path}: unsupported file type "
                        f"'{path.suffix or '(none)'}'; supported: {', '.join(SUPPORTED_EXTENSIONS)}")
    if not path.is_file():
        raise UserError(f"cannot read image {path}: file not found")
    try:
        a = reader(path)
    except (UserError, MemoryError):
        raise
    except Exception as exc:  # any decoder failure means the file is not a readable image
        raise UserError(f"cannot read image {path}: {one_line(exc)}") from exc
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] not in (1, 2, 3, 4):
        raise UserError(f"cannot read image {path}: unsupported pixel array shape {a.shape}")
    a = a[..., :1] if a.shape[2] == 2 else a[..., :3]  # gray+alpha -> gray, RGBA -> RGB
    return np.ascontiguousarray(a, dtype=np.float32)


def to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """(H, W, C) or (H, W) float in [0, 1] -> float32 (channels, H, W): gray -> RGB repeats the channel,
    RGB -> gray is the luminance (0.299, 0.587, 0.114)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"expected an (H, W, 1|3) array, got shape {a.shape}")
    a = a.transpose(2, 0, 1)
    if a.shape[0] == 1 and channels == 3:
        a = np.repeat(a, 3, axis=0)
    elif a.shape[0] == 3 and channels == 1:
        a = (a * np.asarray(LUMA, np.float32).reshape(3, 1, 1)).sum(0, keepdims=True)
    return np.ascontiguousarray(a)


def prepare_image(array: np.ndarray, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """(H, W, C) or (H, W) float in [0, 1] -> float32 tensor (channels, size[0], size[1]) in [0, 1].

    Channels as to_channels; the image is resized with antialiased bilinear interpolation when its shape
    differs from `size` (H, W).
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(to_channels(array, channels))
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[1:]) != size:
        x = F.interpolate(x.unsqueeze(0), size=size, mode="bilinear", align_corners=False,
                          antialias=True)[0]
    return x.clamp(0.0, 1.0).contiguous()
