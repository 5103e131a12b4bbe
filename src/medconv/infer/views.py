"""Test-time augmentation of maps: the mean of a map function over flipped and turned views of an image,
each view's map turned back first. For numpy arrays and torch tensors alike: the caller gives flip and
rot90 for its kind of array."""
from __future__ import annotations

from typing import Callable

TTA_MODES = ("none", "flip", "d4")


def views_mean(image, one_view: Callable, tta: str, flip: Callable, rot90: Callable):
    """Mean of one_view over the views of image (C, H, W) -> a map (K, H, W) aligned with the image.

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
