"""The data summary every training on image files starts with: what was read, and what became of it."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from medconv.data.readers import ImageMeta


@dataclass
class ReadLog:
    """What reading a set of files found: per image its metadata and how its values became [0, 1]
    (data.images.to_unit); filled by `add`, turned into lines by `lines` and `changes`."""

    metas: list[ImageMeta] = field(default_factory=list)
    scalings: list[str] = field(default_factory=list)

    def add(self, meta: ImageMeta, how: str) -> None:
        self.metas.append(meta)
        self.scalings.append(how)

    def merge(self, other: "ReadLog") -> None:
        self.metas += other.metas
        self.scalings += other.scalings

    def native_sizes(self) -> Counter:
        return Counter(tuple(m.shape) for m in self.metas)

    def lines(self, size: tuple[int, int] | None, fit_mode: str, channels: int) -> list[str]:
        """Human lines: native size(s) -> network input (size None: images kept whole, at their own sizes),
        formats and bit depths, channels, intensity range, how values were scaled, and anything dropped."""
        n = len(self.metas)
        sizes = self.native_sizes()
        native = ", ".join(f"{h}x{w} ({c})" if len(sizes) > 1 else f"{h}x{w}" for (h, w), c in sizes.most_common(6))
        more = f" and {len(sizes) - 6} more sizes" if len(sizes) > 6 else ""
        if size is None:
            to, how_size = "kept whole", ""
        else:
            resized = sum(c for s, c in sizes.items() if s != tuple(size))
            to = f"network input {size[0]}x{size[1]}"
            how_size = f" ({resized} of {n} images brought to it by --resize-mode {fit_mode})" if resized else " (native)"
        depth = Counter(f"{m.format} {m.dtype} {m.bits}-bit" for m in self.metas)
        native_ch = Counter(m.channels for m in self.metas)
        seen = [m.observed for m in self.metas if m.observed is not None]
        low, high = (min(o[0] for o in seen), max(o[1] for o in seen)) if seen else (np.nan, np.nan)
        out = [f"images: {n}, native size {native}{more} -> {to}{how_size}",
               "stored as: " + ", ".join(f"{k} ({c})" for k, c in depth.most_common()),
               f"channels: {', '.join(f'{k} ({c})' for k, c in sorted(native_ch.items()))} -> {channels}",
               f"stored values {low:g}..{high:g} -> [0, 1] by " + "; ".join(
                   f"{k} ({c})" for k, c in Counter(self.scalings).most_common())]
        dropped = Counter(d for m in self.metas for d in m.dropped)
        if dropped:
            out.append("dropped: " + ", ".join(f"{k} ({c} images)" for k, c in dropped.most_common()))
        return out

    def changes(self, size: tuple[int, int], fit_mode: str) -> list[str]:
        """What reading these files changed on the way to a network trained at `size`: other sizes, drops."""
        other = sum(c for s, c in self.native_sizes().items() if s != tuple(size))
        out = [f"{other} of {len(self.metas)} images are not {size[0]}x{size[1]}, the size the network was trained "
               f"at: brought to it by --resize-mode {fit_mode}"] if other else []
        dropped = Counter(d for m in self.metas for d in m.dropped)
        return out + [f"dropped: {k} ({c} images)" for k, c in dropped.most_common()]


def split_lines(classes: list[str], counts: dict[str, list[int]]) -> list[str]:
    """'train 120: benign 80, malignant 40' per split; counts: split -> images per class index."""
    return [f"{split} {sum(c)}: " + ", ".join(f"{name} {k}" for name, k in zip(classes, c))
            for split, c in counts.items()]
