"""Format readers: one image file -> its stored pixel values, untouched, and what the file says about them.

Each reader returns (array, ImageMeta). The array is (frames, H, W, C) with the file's own dtype (DICOM: the
modality values after RescaleSlope/Intercept, float32, e.g. Hounsfield units for CT); nothing is scaled here.
Turning values into network input (bit depth, windows, channels, size) is `data.images`' job. Whole-slide
formats are to come as one more reader of the same shape (a region read lazily instead of the whole file).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from medconv.errors import UserError


@dataclass
class ImageMeta:
    """What a file holds, before any conversion.

    shape: native spatial shape (H, W); frames: pages or frames in the file (a 2D image has 1);
    bits: bits per sample as stored (8, 12, 16, 32...); dtype: the stored sample type;
    units: "HU" for CT DICOM after the rescale, else "" (plain pixel values);
    window: the (center, width) the file itself suggests (DICOM WindowCenter/Width), if any;
    value_range: the (low, high) values the stored bit depth can hold, in the array's units (None for floats);
    spacing: pixel spacing in mm, axes as the array's (NIfTI: (slice, row, column)); affine: NIfTI's 4x4;
    dropped: what reading will drop on the way to network input (e.g. "alpha");
    observed: the (min, max) of the values read, once read (data.images.load_image).
    """

    path: str
    format: str
    shape: tuple[int, int]
    channels: int
    dtype: str
    bits: int
    frames: int = 1
    photometric: str = ""
    modality: str = ""
    units: str = ""
    window: tuple[float, float] | None = None
    value_range: tuple[float, float] | None = None
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    dropped: list[str] = field(default_factory=list)
    observed: tuple[float, float] | None = None


def max_pixels() -> int:
    """The most values one image may declare before it is decoded: Pillow's decompression-bomb limit
    (2 x 89,478,485), or $MEDCONV_MAX_PIXELS."""
    value = os.environ.get("MEDCONV_MAX_PIXELS", "178956970")
    try:
        return int(value)
    except ValueError:
        raise UserError(f"MEDCONV_MAX_PIXELS must be a whole number of pixels, got {value!r}") from None


def check_pixels(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse an image whose declared shape holds more than max_pixels() values, before allocating it."""
    count = math.prod(int(s) for s in shape)
    if count > max_pixels():
        raise UserError(f"cannot read image {path}: it declares {' x '.join(map(str, shape))} = {count:,} values, "
                        f"above the limit of {max_pixels():,} (a decompression bomb?); set MEDCONV_MAX_PIXELS "
                        "to raise it")


def _bits(dtype: np.dtype) -> int:
    return 1 if dtype == bool else np.dtype(dtype).itemsize * 8


def _int_range(dtype: np.dtype) -> tuple[float, float] | None:
    """(0, max) for unsigned and boolean samples, (min, max) for signed; None for floats."""
    if dtype == bool:
        return 0.0, 1.0
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).min), float(np.iinfo(dtype).max)
    return None


def _frames_first(a: np.ndarray, channels: int) -> np.ndarray:
    """(H, W), (H, W, C) or (F, H, W[, C]) -> (F, H, W, C)."""
    if channels == 1 and a.shape[-1] != 1:
        a = a[..., None]
    return a.reshape(-1, *a.shape[-3:])


def grey_palette(img) -> bool:
    """Whether a palette image's palette holds only greys (r = g = b), so it reads as one channel."""
    palette = img.getpalette() or []
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_PLAIN = {0: (1, "L"), 2: (3, "RGB")}  # IHDR colour type -> channels, Pillow's mode name (8 bits)


def read_plain_png(path: Path) -> tuple[np.ndarray, ImageMeta] | None:
    """A PNG of plain grey or RGB samples at 8 or 16 bits, with no palette, transparency, EXIF or animation,
    decoded by imagecodecs in one call (3x faster than Pillow on small images, the same values); None for any
    other PNG, which read_pillow reads."""
    data = path.read_bytes()
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour, interlace = data[24], data[25], data[28]
    head = data[:data.find(b"IDAT")]
    if depth not in (8, 16) or colour not in PNG_PLAIN or any(c in head for c in (b"tRNS", b"eXIf", b"acTL")):
        return None
    import imagecodecs

    check_pixels(path, (height, width))
    a = imagecodecs.png_decode(data)
    channels, mode = PNG_PLAIN[colour]
    if a.shape[:2] != (height, width) or (a.ndim == 3) != (channels == 3) or interlace not in (0, 1):
        return None
    mode = mode if depth == 8 else ("I;16" if channels == 1 else "RGB;16")
    meta = ImageMeta(str(path), "png", (height, width), channels, str(a.dtype), _bits(a.dtype), 1, photometric=mode,
                     value_range=_int_range(a.dtype))
    return _frames_first(a, channels), meta


def read_pillow(path: Path) -> tuple[np.ndarray, ImageMeta]:
    """PNG, JPEG, BMP (8 or 16 bits, grey, palette, RGB[A]) through Pillow; EXIF orientation applied. Plain
    PNGs go through read_plain_png."""
    from PIL import Image, ImageOps

    if path.suffix.lower() == ".png" and (plain := read_plain_png(path)) is not None:
        return plain

    with Image.open(path) as img:
        check_pixels(path, (img.height, img.width))
        frames = 1 if img.format == "MPO" else getattr(img, "n_frames", 1)  # MPO: a camera JPEG and its preview
        if "exif" in img.info:  # only files with EXIF can be turned by it (parsing it costs a quarter of a read)
            img = ImageOps.exif_transpose(img)
        mode, dropped = img.mode, []
        if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in img.info):
            dropped.append("alpha")
        if mode in ("P", "PA"):
            rgb = np.asarray(img.convert("RGB"))
            a = rgb[..., 0] if grey_palette(img) else rgb
        elif mode in ("1", "LA", "La"):
            a = np.asarray(img.convert("L"))
        elif mode.startswith("I;16"):
            a = np.asarray(img).astype(np.uint16)
        elif mode == "I":  # 16-bit PNGs often open as mode I (int32)
            a = np.asarray(img)
            if a.size and a.min() >= 0 and a.max() <= 65535:
                a = a.astype(np.uint16)
        elif mode in ("L", "RGB", "F"):
            a = np.asarray(img)
        else:  # RGBA, CMYK, YCbCr, ...: colour without alpha
            a = np.asarray(img.convert("RGB"))
    channels = 3 if a.ndim == 3 else 1
    meta = ImageMeta(str(path), path.suffix.lower().lstrip(".").replace("jpeg", "jpg"), a.shape[:2], channels,
                     str(a.dtype), _bits(a.dtype), frames, photometric=mode, value_range=_int_range(a.dtype),
                     dropped=dropped)
    return _frames_first(a, channels), meta


def read_tiff(path: Path) -> tuple[np.ndarray, ImageMeta]:
    """TIFF, compressed (LZW, Deflate, JPEG... through imagecodecs) or not, one page or many (frames), planar
    or interleaved, palette and min-is-white photometrics resolved. A pyramid gives its full-resolution level."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = series.pages[0] if series.pages else tif.pages[0]
        check_pixels(path, series.shape)
        a, axes = series.asarray(), series.axes
        photometric = page.photometric
        bits = int(page.bitspersample)
        if photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
            a, axes, bits = page.colormap.T[a], axes + "S", 16  # colormaps are 16-bit
        extra = "".join(str(x) for x in page.extrasamples) if len(page.extrasamples) else ""
        # pages stored as series of their own (not written by tifffile), same size: more frames
        more = sum(1 for s in tif.series[1:] if s.shape == series.shape and not s.is_pyramidal)
    if "S" in axes and axes.index("S") != len(axes) - 1:  # planar configuration: samples before Y, X
        a = np.moveaxis(a, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    samples = a.shape[-1] if axes.endswith("S") else 1
    if samples > 4:
        raise UserError(f"cannot read image {path}: {samples} samples per pixel; grey, grey+alpha, RGB or RGBA expected")
    dropped = ["alpha"] if extra or samples in (2, 4) else []
    if samples in (2, 4):
        a = a[..., :samples - 1]
    unsigned = np.issubdtype(a.dtype, np.unsignedinteger)
    bits = bits if unsigned else _bits(a.dtype)
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE:  # 0 is white: inverted within the stored bit depth
        if a.dtype == bool:
            a = ~a
        elif unsigned:
            a = (2 ** bits - 1) - a
        else:
            a = np.iinfo(a.dtype).max - a if np.issubdtype(a.dtype, np.integer) else a.max() - a
    span = (0.0, float(2 ** bits - 1)) if unsigned else _int_range(a.dtype)
    channels = 3 if axes.endswith("S") and a.shape[-1] == 3 else 1
    spatial = a.shape[-3:-1] if axes.endswith("S") else a.shape[-2:]
    frames = int(np.prod(a.shape[:a.ndim - (3 if axes.endswith("S") else 2)], dtype=np.int64)) * (1 + more)
    meta = ImageMeta(str(path), "tiff", tuple(spatial), channels, str(a.dtype), bits, frames,
                     photometric=getattr(photometric, "name", str(photometric)), value_range=span,
                     dropped=dropped)
    if more:  # the first series' frames are read; the caller refuses or reads all (meta.frames)
        meta.dropped.append(f"{more} more page(s)")
    return _frames_first(a, channels), meta


def _dicom_window(ds) -> tuple[float, float] | None:
    """The first (center, width) the file suggests, or None."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    first = (lambda v: float(v[0]) if hasattr(v, "__len__") and not isinstance(v, str) else float(v))
    return first(center), first(width)


def read_dicom(path: Path) -> tuple[np.ndarray, ImageMeta]:
    """One DICOM file: grey values through the modality LUT (RescaleSlope/Intercept: Hounsfield units for CT),
    MONOCHROME1 kept as stored (its inversion is part of display, done with the window); colour as stored."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise UserError(f"cannot read image {path}: DICOM file has no pixel data")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    check_pixels(path, (frames, rows, cols, samples))
    stored = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    modality = str(ds.get("Modality", "") or "").upper()
    bits = int(ds.get("BitsStored", 0) or _bits(stored.dtype))
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    ends = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2 ** bits - 1], np.float64)
    if samples == 1:
        a = apply_modality_lut(stored, ds).astype(np.float32)
        ends = np.sort(apply_modality_lut(ends, ds).astype(np.float64))
    else:
        a = stored
    hu = modality == "CT" or str(ds.get("RescaleType", "")).upper() == "HU"
    spacing = ds.get("PixelSpacing")
    meta = ImageMeta(str(path), "dicom", (rows, cols), 3 if samples >= 3 else 1, str(stored.dtype), bits, frames,
                     photometric=photometric, modality=modality, units="HU" if hu and samples == 1 else "",
                     window=_dicom_window(ds) if samples == 1 else None, value_range=(float(ends[0]), float(ends[1])),
                     spacing=tuple(float(s) for s in spacing) if spacing else None)
    if samples == 1 and frames == 1:
        a = a[None]
    return _frames_first(a, meta.channels), meta


def image_header(path: Path) -> tuple[int, int, int] | None:
    """(H, W, channels) from the file's header without decoding its pixels, or None when the header does not
    say. Channels may over-count (a palette image: 3, though a grey palette reads as 1), never under-count."""
    kind = suffix(path)
    try:
        if kind in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.series[0].pages[0] or tif.pages[0]
                colour = page.samplesperpixel >= 3 or page.photometric == tifffile.PHOTOMETRIC.PALETTE
                return int(page.imagelength), int(page.imagewidth), 3 if colour else 1
        if kind == ".dcm":
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return int(ds.Rows), int(ds.Columns), 3 if int(ds.get("SamplesPerPixel", 1) or 1) >= 3 else 1
        if kind in (".png", ".jpg", ".jpeg", ".bmp"):
            from PIL import Image

            with Image.open(path) as img:
                quarter_turn = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation swaps the axes
                grey = (img.mode in ("1", "L", "LA", "La", "I", "F") or img.mode.startswith("I;16")
                        or (img.mode in ("P", "PA") and grey_palette(img)))
                return (*((img.width, img.height) if quarter_turn else (img.height, img.width)), 1 if grey else 3)
    except Exception:  # unreadable here: the full read says why
        return None
    return None


def read_nifti(path: Path) -> tuple[np.ndarray, ImageMeta]:
    """A NIfTI file through nibabel (scl_slope/inter applied): its voxel axes (i, j, k) reversed, so slices k are
    the frames, rows j and columns i; spacing (k, j, i) in mm; the file's affine (voxel (i, j, k) -> world)."""
    import nibabel as nib

    img = nib.load(str(path))
    shape = tuple(int(s) for s in img.shape)
    check_pixels(path, shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise UserError(f"cannot read image {path}: {len(img.shape)}-D data {img.shape}; expected 2-D or 3-D "
                        "(a 4-D series of volumes is not read)")
    stored = img.get_data_dtype()
    scaled = img.dataobj.slope != 1 or img.dataobj.inter != 0
    a = np.asarray(img.dataobj, dtype=np.float32 if scaled else stored).reshape(shape).transpose(2, 1, 0)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    meta = ImageMeta(str(path), "nifti", a.shape[1:], 1, str(stored), _bits(stored), a.shape[0],
                     value_range=None if scaled else _int_range(stored), spacing=tuple(reversed(zooms)),
                     affine=np.asarray(img.affine, dtype=np.float64))
    return np.ascontiguousarray(a)[..., None], meta


READERS: dict[str, Callable[[Path], tuple[np.ndarray, ImageMeta]]] = {
    ".png": read_pillow, ".jpg": read_pillow, ".jpeg": read_pillow, ".bmp": read_pillow,
    ".tif": read_tiff, ".tiff": read_tiff, ".dcm": read_dicom, ".nii": read_nifti, ".nii.gz": read_nifti,
}


def suffix(path: str | Path) -> str:
    """The file type READERS knows it by: ".nii.gz" for gzipped NIfTI, else the lower-case suffix."""
    name = os.path.basename(str(path)).lower()
    return ".nii.gz" if name.endswith(".nii.gz") else os.path.splitext(name)[1]
