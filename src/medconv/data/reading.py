"""Image files -> network input tensors, all at once (read_images) or when indexed (LazyImages), the way a
run reads them (Reading): size, fit, window, channels. Formats: data.readers; values to [0, 1]: data.images."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from medconv.data.images import kept_8_bit, load_image, plain_8_bit, prepare_image, range_text, read_frame, to_unit
from medconv.data.readers import ImageMeta, image_header
from medconv.data.summary import ReadLog
from medconv.data.types import unit_float
from medconv.errors import UserError

PROGRESS_ABOVE = 500  # images: a progress bar when reading more


@dataclass
class Reading:
    """How image files become network input: size (H, W) or None for the size they share, fit_mode (how other
    sizes are brought to it: data.images.fit), window (center, width) for grey values, channels (None: 3 if any
    image is colour, else 1), spacing (volumes only)."""

    size: tuple[int, int] | None = None
    fit_mode: str = "resize"
    window: tuple[float, float] | None = None
    channels: int | None = None
    spacing: tuple[float, float, float] | None = None  # volumes: resampled to this voxel spacing in mm (D, H, W)


def _named(error: UserError, where: str | None) -> UserError:
    return UserError(f"{where}: {error}") if where else error


def headers(paths: Sequence[Path], wheres: Sequence[str | None]) -> list[tuple[int, int, int]]:
    """(H, W, channels) of each file from its header; a file whose header does not say is read (a broken one
    fails here, named)."""
    out = []
    for path, where in zip(paths, wheres):
        found = image_header(path)
        if found is None:
            try:
                _, meta, _ = load_image(path)
            except UserError as exc:
                raise _named(exc, where) from None
            found = (*meta.shape, meta.channels)
        out.append(found)
    return out


def shared_size(paths: Sequence[Path], shapes: Sequence[tuple[int, int, int]], source: str) -> tuple[int, int]:
    """The (H, W) every file shares; differing sizes are refused in one line that lists them and the choices."""
    sizes: dict[tuple[int, int], list[Path]] = {}
    for path, (h, w, _) in zip(paths, shapes):
        sizes.setdefault((h, w), []).append(path)
    if len(sizes) == 1:
        return next(iter(sizes))
    common = sorted(sizes.items(), key=lambda kv: -len(kv[1]))
    listed = ", ".join(f"{h}x{w} ({len(files)} image{'s' * (len(files) > 1)}, e.g. {files[0].name})"
                       for (h, w), files in common[:4])
    more = f" and {len(common) - 4} more" if len(common) > 4 else ""
    raise UserError(f"{source}: images differ in size: {listed}{more}; choose the network input with --size N and how "
                    "images are brought to it with --resize-mode resize (scale each axis), pad (pad or crop around "
                    "the centre, no scaling) or crop (scale the shorter side to N, crop the centre)")


def read_one(path: Path, reading: Reading, size: tuple[int, int], where: str | None = None
             ) -> tuple[torch.Tensor, ImageMeta, str]:
    """One file -> (C, H, W) at `size`: uint8 when the file holds 8 bits or fewer scaled by their range, else
    float32 in [0, 1]; its metadata and how values were scaled. C: reading.channels, else the file's own.
    Plain 8-bit files already at `size` skip the float round trip (the same values, faster)."""
    try:
        a, meta = read_frame(path)
    except UserError as exc:
        raise _named(exc, where) from None
    channels = reading.channels or a.shape[2]
    if (plain_8_bit(meta, reading.window) and a.dtype == np.uint8 and a.shape[:2] == tuple(size)
            and a.shape[2] <= channels):
        x = torch.from_numpy(a.transpose(2, 0, 1).copy())  # decoded arrays may be read-only
        return (x.expand(channels, -1, -1).contiguous() if x.shape[0] < channels else x), meta, range_text(meta)
    unit, how = to_unit(a, meta, reading.window)
    x = prepare_image(unit, channels, size, reading.fit_mode)
    return (x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8) if kept_8_bit(meta, how) else x), meta, how


def read_images(paths: Sequence[Path], reading: Reading, size: tuple[int, int], where: Sequence[str | None] = ()
                ) -> tuple[list[torch.Tensor], int, ReadLog]:
    """Read and prepare every file -> (C, H, W) tensors at `size` (uint8 when every file holds 8 bits or fewer
    and no window applies, else float32 in [0, 1]), the channel count used and what reading found. `where`:
    per file, a prefix for its read errors (e.g. "labels.csv line 7")."""
    wheres = list(where) or [None] * len(paths)
    items: Sequence = list(zip(paths, wheres))
    if len(items) > PROGRESS_ABOVE:
        from rich.console import Console
        from rich.progress import track

        items = track(items, description=f"Reading {len(items)} images", total=len(items),
                      console=Console(stderr=True), transient=True)
    out, log = [], ReadLog()
    for path, w in items:
        x, meta, how = read_one(Path(path), reading, size, w)
        log.add(meta, how)
        out.append(x)
    if any(t.dtype != torch.uint8 for t in out):  # one dtype for the set: float when any image needs it
        out = [unit_float(t) for t in out]
    channels = reading.channels
    if channels is None:  # 3 if any image is colour, else 1; gray ones repeated (exact)
        channels = 3 if any(t.shape[0] == 3 for t in out) else 1
        out = [t.expand(3, -1, -1) if t.shape[0] < channels else t for t in out]
    return out, channels, log


def is_lazy(images) -> bool:
    """Whether an ImageSet's images are read when indexed (Indexed: files, a user's Dataset) rather than a tensor."""
    return isinstance(images, Indexed)


class Indexed:
    """Images (N, C, H, W) read one by one when indexed, never held together: images[i] is (C, H, W) float32 in
    [0, 1]; a slice, list or tensor of indices gives (B, C, H, W). Subclasses give __len__, read(i), subset and
    item_shape (C, H, W)."""

    dtype = torch.float32
    item_shape: tuple[int, int, int]

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def subset(self, index) -> "Indexed":
        raise NotImplementedError

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.item_shape))

    def positions(self, index) -> list[int]:
        """Positions an index selects: a slice, or a list, array or tensor of positions."""
        if isinstance(index, slice):
            return list(range(len(self)))[index]
        return [int(i) for i in (index.tolist() if hasattr(index, "tolist") else index)]

    def read_stored(self, i: int) -> torch.Tensor:
        """Item i as held before scaling: uint8 (0-255) or float32 in [0, 1] (read() unless overridden)."""
        return self.read(i)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, int):
            return self.read(index)
        picked = self.positions(index)
        if not picked:
            return torch.zeros((0, *self.item_shape))
        items = [self.read_stored(i) for i in picked]
        if all(x.dtype == torch.uint8 for x in items):  # scaled once for the batch: the same values, faster
            return unit_float(torch.stack(items))
        return torch.stack([unit_float(x) for x in items])

    def chunks(self, n: int = 256) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), n):
            yield self[start:start + n]

    def to(self, *args, **kwargs) -> "Indexed":  # stays on the CPU; batches are moved as they are read
        return self


class LazyImages(Indexed):
    """Image files read when indexed, as read_images reads them (its uint8 / 255): an ImageSet's images where a
    cohort does not fit in memory (--loading lazy)."""

    def __init__(self, paths: Sequence[Path], reading: Reading, size: tuple[int, int], channels: int,
                 where: Sequence[str | None] = ()):
        self.paths, self.size, self.where = [Path(p) for p in paths], tuple(size), list(where) or [None] * len(paths)
        self.reading = Reading(tuple(size), reading.fit_mode, reading.window, channels)
        self.item_shape = (channels, *self.size)

    def __len__(self) -> int:
        return len(self.paths)

    def read_stored(self, i: int) -> torch.Tensor:
        return read_one(self.paths[i], self.reading, self.size, self.where[i])[0]

    def read(self, i: int) -> torch.Tensor:
        return unit_float(self.read_stored(i))

    def subset(self, index) -> "LazyImages":
        picked = self.positions(index)
        return LazyImages([self.paths[i] for i in picked], self.reading, self.size, self.reading.channels,
                          [self.where[i] for i in picked])


class LazyPairs(torch.utils.data.Dataset):
    """(Indexed images, targets (N, ...)) indexed by a list of indices -> (images (B, C, H, W), targets (B, ...)):
    a batch is read by one DataLoader worker."""

    def __init__(self, images: Indexed, targets: torch.Tensor):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.targets[index]


def reading_workers(workers: int | None) -> int:
    """DataLoader worker processes for lazy loading: as given; else none on 2 cores or fewer (measured by
    benchmarks/data_pipeline.py: a worker there slows the training threads more than reading in their own
    process costs), else one per 4 cores, at most 4."""
    if workers is not None:
        return workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, max(1, cores // 4))


class EpochOrder(torch.utils.data.Sampler):
    """Batches of indices (lists of `size`) in the random order `generator` gives, the generator set anew for
    each epoch, so that one DataLoader and its worker processes serve every epoch; a last batch of one image is
    dropped (batch norm cannot train on it). The same batches as BatchSampler(RandomSampler(range(n),
    generator=generator), size, drop_last=n % size == 1)."""

    def __init__(self, n: int, size: int):
        self.n, self.size, self.generator = n, size, None

    def __iter__(self):
        order = torch.utils.data.RandomSampler(range(self.n), generator=self.generator)
        return iter(torch.utils.data.BatchSampler(order, self.size, drop_last=self.n % self.size == 1))

    def __len__(self) -> int:
        return self.n // self.size if self.n % self.size == 1 else -(-self.n // self.size)
