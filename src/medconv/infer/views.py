"""Whole-image maps, for numpy arrays and torch tensors alike: the padding that lets a U-Net see a whole
image, and test-time augmentation (the mean of a map function over flipped and turned views of an image,
each view's map turned back first; the caller gives flip and rot90 for its kind of array)."""
from __future__ import annotations

from typing import Callable

TTA_MODES = ("none", "flip", "d4")


def views_mean(image, one_view: Callable, tta: str, flip: Callable, rot90: Callable):
    """Mean of one_view over the views of image (C, H, W) -> a map (K, H, W) aligned with the image; likewise
    for a batch, images (N, C, H, W) -> maps (N, K, H, W) (only the last two axes are flipped and turned).

    tta: "none" (one view), "flip" (the 4 flips of the two axes) or "d4" (those 4, each also turned by
    90 degrees: 8 views). flip(a, dims) flips axes dims; rot90(a, k) turns the last two axes k times.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta {tta!r}: expected one of {', '.join(TTA_MODES)}")
    flips = [(), (-1,), (-2,), (-2, -1)] if tta in ("flip", "d4") else [()]
    turns = (0, 1) if tta == "d4" else (0,)
    total = 0
    for k in turns:
        for dims in flips:
            view = rot90(flip(image, dims) if dims else image, k)
            probs = rot90(one_view(view), -k)
            total = total + (flip(probs, dims) if dims else probs)
    return total / (len(flips) * len(turns))


def unet_padding(height: int, width: int, multiple: int = 16) -> tuple[int, int, str]:
    """(rows, cols, mode): how much to pad at the bottom and right so both sides are multiples of
    `multiple`; mode "reflect" (mirrored) where the image is large enough for that, else "edge"."""
    rows, cols = -height % multiple, -width % multiple
    return rows, cols, "reflect" if rows < height and cols < width else "edge"
