"""One image file -> network input: stored values to [0, 1] by the file's bit depth or a window, channels,
and the fit to a network's input size. Readers per format: `data.readers`."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medconv.data.readers import READERS, ImageMeta, suffix
from medconv.errors import UserError

if TYPE_CHECKING:
    import torch

LUMA = (0.299, 0.587, 0.114)
SUPPORTED_EXTENSIONS = tuple(READERS)
# CT windows (center, width) in Hounsfield units, as radiology viewers name them.
WINDOW_PRESETS = {"brain": (40.0, 80.0), "subdural": (75.0, 215.0), "stroke": (40.0, 40.0),
                  "lung": (-600.0, 1500.0), "mediastinum": (50.0, 350.0), "abdomen": (40.0, 400.0),
                  "liver": (30.0, 150.0), "bone": (400.0, 1800.0)}
FULL_HU = (1023.5, 4095.0)  # -1024..3071 HU, the 12-bit CT range: CT without --window
FIT_MODES = ("resize", "pad", "crop")


def parse_window(spec: str | None) -> tuple[float, float] | None:
    """"CENTER,WIDTH" (e.g. "40,400") or a preset name (WINDOW_PRESETS) -> (center, width); None stays None."""
    if spec is None or spec == "":
        return None
    text = str(spec).strip().lower()
    if text in WINDOW_PRESETS:
        return WINDOW_PRESETS[text]
    parts = text.split(",")
    try:
        center, width = (float(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        center = width = None
    if center is None or not np.isfinite([center, width]).all() or width <= 0:
        raise UserError(f"--window {spec!r}: expected CENTER,WIDTH with a positive width (e.g. 40,400) or one of "
                        f"{', '.join(WINDOW_PRESETS)}")
    return center, width


def windowed(a: np.ndarray, window: tuple[float, float]) -> tuple[np.ndarray, str]:
    """Values through a window (center, width) -> float64 in [0, 1] (clipped), and how, e.g. "window 40,400"."""
    center, width = window
    return np.clip((a.astype(np.float64) - (center - width / 2)) / width, 0.0, 1.0), f"window {center:g},{width:g}"


def to_unit(a: np.ndarray, meta: ImageMeta, window: tuple[float, float] | None = None) -> tuple[np.ndarray, str]:
    """Stored values -> float32 in [0, 1] and how: a window (center, width) when given, for CT without one the
    full -1024..3071 HU range; integers by the range their bit depth holds (meta.value_range); floats
    as they are when in [0, 1], else by the image's own range (said in the returned text). MONOCHROME1
    DICOM is inverted (displayed white-on-black like the others)."""
    if window is None and meta.units == "HU":
        window = FULL_HU
    if window is not None:
        x, how = windowed(a, window)
    elif meta.value_range is not None:
        lo, hi = meta.value_range
        x, how = (a.astype(np.float64) - lo) / (hi - lo), range_text(meta)
    else:
        x = np.nan_to_num(a.astype(np.float64))
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
        if lo < 0 or hi > 1:
            x, how = ((x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)), "float values outside [0, 1]: each image by its own min-max"
        else:
            how = "float values in [0, 1] as they are"
    x = np.clip(x, 0.0, 1.0)
    if meta.photometric == "MONOCHROME1":
        x = 1.0 - x
    return x.astype(np.float32), how


def range_text(meta: ImageMeta) -> str:
    """How to_unit says it scaled values by their bit depth's range, e.g. "8-bit range 0..255"."""
    lo, hi = meta.value_range
    return f"{meta.bits}-bit range {lo:g}..{hi:g}"


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def read_stored(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    """The file's stored values (frames, H, W, C) and metadata (data.readers); failures are one-line UserErrors."""
    path = Path(path)
    reader = READERS.get(suffix(path))
    if reader is None:
        raise UserError(f"cannot read image {path}: unsupported file type "
                        f"'{suffix(path) or '(none)'}'; supported: {', '.join(SUPPORTED_EXTENSIONS)}")
    try:
        a, meta = reader(path)
    except (UserError, MemoryError):
        raise
    except (FileNotFoundError, IsADirectoryError):
        raise UserError(f"cannot read image {path}: file not found") from None
    except Exception as exc:  # any decoder failure means the file is not a readable image
        raise UserError(f"cannot read image {path}: {one_line(exc)}") from exc
    if a.ndim != 4 or 0 in a.shape[1:3] or a.shape[3] not in (1, 3):
        raise UserError(f"cannot read image {path}: unsupported pixel array shape {a.shape}")
    return a, meta


def read_frame(path: str | Path) -> tuple[np.ndarray, ImageMeta]:
    """A 2D image file's stored values (H, W, C) and metadata, meta.observed set; a file of several frames or
    pages is refused: a 2D image is one frame."""
    a, meta = read_stored(path)
    if meta.frames > 1:
        raise UserError(f"cannot read image {path}: it holds {meta.frames} frames (pages); a 2D image is one frame: "
                        "save each frame as its own file, or read the file as a volume")
    if a.size:
        floats = a.dtype.kind == "f"
        meta.observed = (float(np.nanmin(a) if floats else a.min()), float(np.nanmax(a) if floats else a.max()))
    return a[0], meta


def plain_8_bit(meta: ImageMeta, window: tuple[float, float] | None) -> bool:
    """Whether to_unit would only divide these stored values by 255 (uint8, no window, not MONOCHROME1)."""
    return (window is None and meta.dtype == "uint8" and meta.value_range == (0.0, 255.0) and meta.units != "HU"
            and meta.photometric != "MONOCHROME1")


def kept_8_bit(meta: ImageMeta, how: str) -> bool:
    """Whether an image read as `how` (to_unit) is kept as uint8 (k / 255): files of 8 bits or fewer scaled by
    their bit range, so the network sees the values training saw."""
    return meta.bits <= 8 and how.startswith(f"{meta.bits}-bit range")


def load_image(path: str | Path, window: tuple[float, float] | None = None) -> tuple[np.ndarray, ImageMeta, str]:
    """A 2D image file -> float32 (H, W, C) in [0, 1] (C = 1 or 3), its metadata and how values were scaled
    (to_unit). A file of several frames or pages is refused: a 2D image is one frame."""
    a, meta = read_frame(path)
    x, how = to_unit(a, meta, window)
    return np.ascontiguousarray(x), meta, how


def read_image(path: str | Path, window: tuple[float, float] | None = None) -> np.ndarray:
    """A PNG, JPEG, BMP, TIFF, DICOM or (one-slice) NIfTI file -> float32 (H, W, C) in [0, 1], C = 1 or 3 (load_image)."""
    return load_image(path, window)[0]


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


def fit(x: torch.Tensor, size: tuple[int, int], mode: str = "resize") -> torch.Tensor:
    """(..., C, H, W) float -> (..., C, size[0], size[1]), by torchvision's functional transforms:
    resize  scales each axis to size (antialiased bilinear; the aspect ratio changes when it differs);
    pad     no scaling: pads with zeros, or crops when larger, around the centre;
    crop    keeps the aspect ratio: scales the shorter side to fit, then crops the centre."""
    import torchvision.transforms.functional as TF

    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "resize":
        return TF.resize(x, list(size), antialias=True)
    if mode == "crop":
        scale = max(size[0] / x.shape[-2], size[1] / x.shape[-1])
        x = TF.resize(x, [max(size[0], round(x.shape[-2] * scale)), max(size[1], round(x.shape[-1] * scale))],
                      antialias=True)
    elif mode != "pad":
        raise ValueError(f"fit mode must be one of {', '.join(FIT_MODES)}, got {mode!r}")
    return TF.center_crop(x, list(size))


def prepare_image(array: np.ndarray, channels: int, size: tuple[int, int], mode: str = "resize") -> torch.Tensor:
    """(H, W, C) or (H, W) float in [0, 1] -> float32 tensor (channels, size[0], size[1]) in [0, 1]:
    channels as to_channels, brought to `size` (H, W) by fit(mode) when its shape differs."""
    import torch

    x = fit(torch.from_numpy(to_channels(array, channels)), size, mode)
    return x.clamp(0.0, 1.0).contiguous()
